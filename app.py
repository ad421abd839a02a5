"""Entry point: `flask --app app ...` and `gunicorn app:app` use `app`;
`python app.py` serves the web app with the embedded worker (SQLite, local models)."""
import argparse

from runbase_web import create_app

app = create_app()


def main() -> None:
    """Serve web + embedded worker, for a laptop or a small install."""
    from runbase_web import hosts
    from runbase_web.cli import upgrade_database
    from runbase_web.metrics import track_worker
    from runbase_web.state import WORKER
    from runbase_web.worker import Worker
    from runbase_web.worker.shutdown import drain, exit_now, on_stop_signals

    parser = argparse.ArgumentParser(description="Runbase: web app and embedded worker")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    upgrade_database(app)
    worker = None
    if hosts.guessing(app.config) and args.host not in ("127.0.0.1", "localhost", "::1"):
        print("Note: this server answers only to the names localhost, 127.0.0.1 and [::1]; "
              "set RUNBASE_ALLOWED_HOSTS (or RUNBASE_PUBLIC_URL) to reach it by another.")
    if app.config["EMBEDDED_WORKER"]:
        worker = app.extensions[WORKER] = Worker(app).start()
        track_worker(worker)  # its slots on this process's /metrics
    # SIGTERM as Ctrl+C: stop serving, then stop the worker gracefully (worker/shutdown.py).
    on_stop_signals(_stop_serving)
    print(f"Runbase is running on http://{args.host}:{args.port}/  (Ctrl+C to stop)")
    try:
        app.run(host=args.host, port=args.port, threaded=True, use_reloader=False)
    except KeyboardInterrupt:
        pass  # the signal came before or after serve_forever, which swallows its own
    if worker is not None:
        grace = app.config["SHUTDOWN_GRACE_SECONDS"]
        print(f"Stopping: up to {grace:g} s for runs in progress (Ctrl+C again to quit now).")
        drain(worker, grace)
    exit_now(0)


def _stop_serving() -> None:
    """Werkzeug's server stops on KeyboardInterrupt, whichever signal raised it."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    main()
