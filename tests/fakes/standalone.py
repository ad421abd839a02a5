"""The fake OpenAI Images API in a process of its own, for multi-process tests and
benchmarks:

    python -m tests.fakes.standalone PORT [--key KEY] [--latency SECONDS]

It is the suite's fake (`tests/fakes/openai.py`: the real `POST /v1/images/generations`
wire format, checking the bearer key and body, answering a small PNG as `b64_json`),
behind a threaded server, optionally answering each request only after `--latency`
seconds (a provider that takes its time). It keeps no call log: such runs send thousands
of requests and nobody reads them back.
"""
from __future__ import annotations

import argparse
import logging
import time

from werkzeug.serving import make_server

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
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = make_server("127.0.0.1", args.port, delayed(app, args.latency), threaded=True)
    server.daemon_threads = True
    print(f"fake OpenAI on http://127.0.0.1:{args.port} (latency {args.latency:g} s)", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
