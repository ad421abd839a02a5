"""The fake OpenAI Images API in a process of its own, for multi-process tests and
benchmarks:

    python -m tests.fakes.standalone PORT [--key KEY] [--latency SECONDS]

It is the suite's fake (`tests/fakes/openai.py`: the real `POST /v1/images/generations`
wire format, checking the bearer key and body, answering a small PNG as `b64_json`),
served by gunicorn (threads, HTTP/1.1 keep-alive, as the real API keeps a client's
connection open), optionally answering each request only after `--latency` seconds (a
provider that takes its time). It keeps no call log: such runs send thousands of requests
and nobody reads them back.
"""
from __future__ import annotations

import argparse
import time

from gunicorn.app.base import BaseApplication

from tests.fakes.openai import make_app
from tests.fakes.server import FakeState


class Forgetful(FakeState):
    """A FakeState that keeps no call log (same contract, minus the memory)."""

    def record(self):  # noqa: D102
        return None


class _Discard(list):
    """A list that stays empty: the fake appends a timestamp per request."""

    def append(self, _item) -> None:  # noqa: D102
        pass


def delayed(app, seconds: float):
    """`app` answering each request `seconds` later (in the request's own thread)."""
    def wsgi(environ, start_response):
        time.sleep(seconds)
        return app(environ, start_response)
    return wsgi if seconds > 0 else app


#: Requests answered at once: with a provider that takes its time, every run in flight
#: holds one (idle kept-alive connections hold none).
THREADS = 64
#: How long an idle connection is kept open, as a provider's load balancer would.
KEEPALIVE_SECONDS = 75


class _Server(BaseApplication):
    """gunicorn serving one WSGI app in one worker process, configured in code."""

    def __init__(self, app, port: int, ready_line: str):
        self._app = app
        self._settings = {
            "bind": f"127.0.0.1:{port}", "workers": 1, "worker_class": "gthread",
            "threads": THREADS, "keepalive": KEEPALIVE_SECONDS, "loglevel": "warning",
            # Said once the socket listens, so whoever waits for it can connect.
            "when_ready": lambda _arbiter: print(ready_line, flush=True)}
        super().__init__()

    def load_config(self) -> None:  # noqa: D102
        for name, value in self._settings.items():
            self.cfg.set(name, value)

    def load(self):  # noqa: D102
        return self._app


def main(argv: list[str] | None = None) -> None:
    """Serve until killed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--key", default=None, help="the API key to require")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args(argv)
    state = Forgetful()
    if args.key:
        state.data["api_key"] = args.key
    app = make_app(state)
    state.data["times"] = _Discard()
    ready = f"fake OpenAI on http://127.0.0.1:{args.port} (latency {args.latency:g} s)"
    _Server(delayed(app, args.latency), args.port, ready).run()


if __name__ == "__main__":
    main()
