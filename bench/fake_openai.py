"""A 0 ms fake OpenAI Images API on 127.0.0.1, in its own process, for image_runs.py.

    python bench/fake_openai.py PORT [API_KEY]

It is the test suite's fake (tests/fakes/openai.py: the real `POST /v1/images/generations`
wire format, checking the bearer key and the body, answering with a small PNG as
`b64_json`), served by a threaded server. Its own process so that its work does not share
a GIL with the benchmark's client threads.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.openai import make_app  # noqa: E402
from tests.fakes.server import FakeState  # noqa: E402


class Forgetful(FakeState):
    """A FakeState that keeps no call log: the benchmark sends thousands of requests and
    never reads them back, so the list would only grow."""

    def record(self):  # noqa: D102  (same contract, minus the memory)
        return None


def main() -> None:
    """Serve until killed."""
    port = int(sys.argv[1])
    state = Forgetful()
    if len(sys.argv) > 2:
        state.data["api_key"] = sys.argv[2]
    app = make_app(state)
    state.data["times"] = _Discard()  # the fake appends a timestamp per request
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = make_server("127.0.0.1", port, app, threaded=True)
    server.daemon_threads = True
    print(f"fake OpenAI on http://127.0.0.1:{port}", flush=True)
    server.serve_forever()


class _Discard(list):
    """A list that stays empty (see Forgetful)."""

    def append(self, _item) -> None:  # noqa: D102
        pass


if __name__ == "__main__":
    main()
