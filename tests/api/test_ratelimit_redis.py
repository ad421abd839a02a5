"""Rate limits hold across processes when RUNBASE_REDIS_URL points at a shared Redis.

Two real `python app.py` processes serve one database, as two gunicorn workers or two
machines would. With Redis they share one budget per key; with the in-process store
(the control) each process counts alone, which is exactly what Redis is there to fix.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.support.redis_server import RedisServer, redis_available

REPO = Path(__file__).resolve().parents[2]
LIMIT = 6

pytestmark = [
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
    pytest.mark.skipif(not redis_available(), reason="redis-server is not installed"),
]


@pytest.fixture(scope="module")
def redis_server():
    server = RedisServer().start()
    yield server
    server.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _serve(app, tmp_path, name: str, redis_url: str | None) -> tuple[subprocess.Popen, str]:
    """Start `python app.py` on the test's database; returns (process, base URL) once it answers."""
    port = _free_port()
    env = dict(os.environ, RUNBASE_DATABASE_URL=app.config["DATABASE_URL"],
               RUNBASE_DATA_DIR=app.config["DATA_DIR"], RUNBASE_EMBEDDED_WORKER="0",
               RUNBASE_RATE_LIMIT=f"{LIMIT}/60s", RUNBASE_REDIS_URL=redis_url or "")
    log = open(tmp_path / f"{name}.log", "wb")
    process = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=REPO, env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    log.close()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(base + "/api/v1/models", timeout=1)
            return process, base
        except requests.ConnectionError:
            if process.poll() is not None:
                break
            time.sleep(0.1)
    process.kill()
    raise AssertionError("app.py did not start:\n" + (tmp_path / f"{name}.log").read_text())


def _statuses_across_two_processes(app, tmp_path, auth, redis_url):
    first, first_url = _serve(app, tmp_path, "first", redis_url)
    second, second_url = _serve(app, tmp_path, "second", redis_url)
    try:
        statuses = []
        for _ in range(LIMIT):  # alternate: each process sees half of the requests
            for base in (first_url, second_url):
                statuses.append(requests.get(f"{base}/api/v1/runs/run_missing", headers=auth,
                                             timeout=10).status_code)
        return statuses
    finally:
        for process in (first, second):
            process.terminate()
            process.wait(timeout=10)


def test_redis_makes_the_limit_hold_across_processes(app, tmp_path, auth, redis_server):
    statuses = _statuses_across_two_processes(app, tmp_path, auth, redis_server.url)
    assert statuses.count(404) == LIMIT
    assert statuses.count(429) == LIMIT
    assert statuses[:LIMIT] == [404] * LIMIT


def test_in_process_store_counts_each_process_alone(app, tmp_path, auth):
    statuses = _statuses_across_two_processes(app, tmp_path, auth, None)
    assert statuses == [404] * (2 * LIMIT)
