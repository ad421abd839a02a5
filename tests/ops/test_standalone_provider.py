"""The fake provider the benchmarks and the topology test run in a process of their own
(tests/fakes/standalone.py) answers in the real wire format and keeps a client's
connection open between requests, as the real API does: a fake that closed every
connection would make each provider call pay a new TCP connection."""
from __future__ import annotations

import http.client
import json
import os
import sys

from tests.support.topology import Process, free_port

KEY = "sk-standalone"


def test_the_standalone_fake_answers_on_one_kept_alive_connection(tmp_path):
    port = free_port()
    provider = Process("provider", [sys.executable, "-m", "tests.fakes.standalone", str(port),
                                    "--key", KEY], dict(os.environ), tmp_path).start()
    try:
        provider.wait_for_log("fake OpenAI on")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        body = json.dumps({"model": "gpt-image-1", "prompt": "a lighthouse"})
        headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        sockets = []
        for _ in range(3):
            connection.request("POST", "/v1/images/generations", body, headers)
            answer = connection.getresponse()
            assert answer.status == 200
            assert json.loads(answer.read())["data"][0]["b64_json"]
            sockets.append(connection.sock)  # http.client drops it on "Connection: close"
        assert sockets[0] is not None and sockets == [sockets[0]] * 3
        connection.close()
    finally:
        provider.stop()
