"""Under gunicorn's several processes /metrics needs no shared state: every process reads
the same numbers from the database, so whichever one answers a scrape, it is the same."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.conftest import wait_for_run

REPO = Path(__file__).resolve().parents[2]
TOKEN = "gunicorn-metrics-token"
SCRAPES = 12


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _database_lines(text: str) -> tuple[str, ...]:
    """The samples of the database-derived metrics (the time-dependent one left out)."""
    return tuple(sorted(line for line in text.splitlines()
                        if line.startswith("runbase_") and not line.startswith("runbase_oldest_due")))


def _scrape(url: str, deadline: float, log: Path) -> str:
    """One scrape on a new connection (so any of the processes may take it)."""
    while True:
        try:
            response = requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
            assert response.status_code == 200, response.text
            return response.text
        except requests.ConnectionError:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)


def test_every_gunicorn_process_answers_the_same_numbers(app, client, auth, worker, tmp_path):
    for _ in range(2):
        response = client.post("/api/v1/runs", headers=auth,
                               json={"model": "local/sketch", "input": {"prompt": "gunicorn"}})
        wait_for_run(app, response.get_json()["id"])
    port, log = _free_port(), tmp_path / "gunicorn.log"
    env = dict(os.environ, RUNBASE_DATABASE_URL=app.config["DATABASE_URL"],
               RUNBASE_DATA_DIR=app.config["DATA_DIR"], RUNBASE_METRICS_TOKEN=TOKEN)
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--workers", "3", "--bind", f"127.0.0.1:{port}",
             "app:app"], cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        answers = [_scrape(f"http://127.0.0.1:{port}/metrics", deadline, log)
                   for _ in range(SCRAPES)]
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert len({_database_lines(text) for text in answers}) == 1
    assert 'runbase_runs_created_total{model="local/sketch"} 2.0' in answers[0]
    # Web processes run no worker: no per-process numbers that would differ between them.
    assert all("runbase_worker_slots" not in text for text in answers)
