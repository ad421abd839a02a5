"""How fast an idle embedded worker starts a new run (issue: within 100 ms).

Measures startedAt - createdAt for runs created through the API on an idle
worker, with the wake-on-create signal (what `python app.py` does) and, as the
baseline in the same run, with only the poll loop. Prints medians, p95 and the
ratio. Usage: python bench/start_latency.py [--runs 30] [--poll 0.5]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runbase_web import create_app  # noqa: E402
from runbase_web.cli import upgrade_database  # noqa: E402
from runbase_web.extensions import db  # noqa: E402
from runbase_web.models import Run  # noqa: E402
from runbase_web.services import accounts, keys  # noqa: E402
from runbase_web.state import WORKER  # noqa: E402
from runbase_web.worker import Worker  # noqa: E402


def build_app(poll: float):
    app = create_app({"DATA_DIR": tempfile.mkdtemp(prefix="runbase-bench-"), "PROVIDER_ENV": {},
                      "WORKER_POLL_SECONDS": poll, "CATALOG_PATH": None,
                      "RATE_LIMIT": None})  # it measures start latency, not the per-key limit
    upgrade_database(app)
    with app.app_context():
        user = accounts.create_user(db.session, "bench@example.com", "benchmark-pass",
                                    credit_micros=100_000_000)
        _key, full_key = keys.create_key(db.session, user.id, "bench")
        db.session.commit()
    return app, {"Authorization": f"Bearer {full_key}"}


def start_delays(app, headers, runs: int, wake: bool) -> list[float]:
    worker = Worker(app, threads=2).start()
    if wake:
        app.extensions[WORKER] = worker
    client, delays = app.test_client(), []
    for _ in range(runs):
        time.sleep(0.2)  # idle: the worker is waiting, not mid-claim
        run_id = client.post("/api/v1/runs", headers=headers, json={
            "model": "local/test", "input": {"prompt": "bench"}}).get_json()["id"]
        while True:
            with app.app_context():
                run = db.session.get(Run, run_id)
                if run.started_at:
                    delays.append((run.started_at - run.created_at).total_seconds() * 1000)
                    break
            time.sleep(0.005)
    worker.stop()
    app.extensions.pop(WORKER, None)
    return delays


def describe(name: str, delays: list[float]) -> float:
    median = statistics.median(delays)
    p95 = sorted(delays)[int(len(delays) * 0.95) - 1]
    print(f"{name:<22} median {median:7.1f} ms   p95 {p95:7.1f} ms   max {max(delays):7.1f} ms")
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--poll", type=float, default=0.5)
    args = parser.parse_args()
    app, headers = build_app(args.poll)
    print(f"{args.runs} runs of local/test on an idle embedded worker (poll every {args.poll}s), SQLite")
    woken = describe("wake on create", start_delays(app, headers, args.runs, wake=True))
    polled = describe("poll only (baseline)", start_delays(app, headers, args.runs, wake=False))
    print(f"ratio poll-only / wake: {polled / woken:.1f}x")


if __name__ == "__main__":
    main()
