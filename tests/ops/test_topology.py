"""The scaled-out deployment, end to end, as an operator runs it from `deploy/`.

PostgreSQL, Redis, an S3 server, two web machines (gunicorn with deploy/gunicorn.conf.py),
two standalone workers and a provider that takes its time, all on 127.0.0.1. Eight client
threads send 500 runs through both web machines; midway one worker is killed with SIGKILL
and another stopped with SIGTERM (and each replaced, as systemd's Restart=always would).
Then: every run succeeded and was charged exactly once, balances and key spend are exact,
every output is served by both machines, /metrics agrees with the database, and /readyz
says 503 while PostgreSQL is down and 200 once it is back.

Run it alone with `python3 -m pytest -m topology`.
"""
from __future__ import annotations

import hashlib
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import requests

from tests.support import postgres
from tests.support.topology import (METRICS_TOKEN, MODEL, Topology, example_environment,
                                    procfile, systemd_directives)

pytestmark = [pytest.mark.topology, pytest.mark.postgres,
              pytest.mark.skipif(not postgres.available(), reason="PostgreSQL not installed"),
              pytest.mark.timeout(600)]

RUNS = 500
CLIENTS = 8
LATENCY = 0.1  # seconds the provider takes per image
KILL_AT, TERM_AT = 150, 300  # created runs before each disruption
OUTAGE_SECONDS = 5


def test_deploy_files_agree_with_each_other():
    """The systemd units start what the Procfile names, with the example environment,
    and give a stopping worker more time than its grace period."""
    web = systemd_directives("runbase-web.service")
    worker = systemd_directives("runbase-worker@.service")
    for unit, command in ((web, procfile()["web"]), (worker, procfile()["worker"])):
        executable, *arguments = unit["ExecStart"][0].split()
        assert executable.endswith("/" + command[0]) and arguments == command[1:]
        assert unit["EnvironmentFile"] == ["/etc/runbase/runbase.env"]
        assert unit["KillSignal"] == ["SIGTERM"]
    grace = int(example_environment()["RUNBASE_SHUTDOWN_GRACE_SECONDS"])
    assert int(worker["TimeoutStopSec"][0]) > grace
    assert example_environment()["RUNBASE_EMBEDDED_WORKER"] == "0"


class Load:
    """Client threads creating runs, spread over the web machines as a load balancer would."""

    def __init__(self, topology: Topology, count: int):
        self.topology, self.count = topology, count
        self.created: list[str] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._local = threading.local()

    def _create(self, index: int) -> None:
        session = getattr(self._local, "session", None) or requests.Session()
        self._local.session = session
        base = self.topology.web_urls[index % len(self.topology.web_urls)]
        body = {"model": MODEL, "input": {"prompt": f"a lighthouse at dusk, take {index}"}}
        response = session.post(f"{base}/api/v1/runs", json=body, headers=self.topology.headers,
                                timeout=60)
        with self._lock:
            if response.status_code == 201:
                self.created.append(response.json()["id"])
            else:
                self.errors.append(f"{response.status_code} {response.text[:200]}")

    def start(self, pool: ThreadPoolExecutor):
        """Submit every create; returns the futures."""
        return [pool.submit(self._create, index) for index in range(self.count)]

    def wait_until_created(self, count: int, timeout: float = 120) -> None:
        """Block until at least `count` runs exist (or creation failed)."""
        deadline = time.monotonic() + timeout
        while len(self.created) < count and not self.errors:
            assert time.monotonic() < deadline, "runs are not being created"
            time.sleep(0.02)


def _query(topology: Topology, sql: str, *params):
    with psycopg.connect(topology.database_url.replace("postgresql+psycopg", "postgresql")) as db:
        return db.execute(sql, params).fetchall()


def _wait_until_all_ended(topology: Topology, ids: list[str], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        (open_runs,), = _query(topology, "SELECT count(*) FROM runs WHERE id = ANY(%s) "
                                         "AND status IN ('pending', 'processing')", ids)
        if open_runs == 0:
            return
        assert time.monotonic() < deadline, f"{open_runs} runs unfinished\n{topology.log_tails()}"
        time.sleep(0.2)


def _owner(worker) -> str:
    """The lease owner a worker logged at start ("Worker <owner> running; ...")."""
    return re.search(r"Worker (\S+) running", worker.log_path.read_text()).group(1)


def _disrupt_workers(topology: Topology, load: Load) -> tuple[list[str], int]:
    """SIGKILL the first worker, then SIGTERM the second, replacing each; the runs the
    killed worker held, and the SIGTERMed worker's exit code."""
    first, second = topology.worker_processes[:2]
    load.wait_until_created(KILL_AT)
    first.send(signal.SIGKILL)
    first.wait(timeout=10)
    orphans = [run_id for run_id, in _query(
        topology, "SELECT id FROM runs WHERE lease_owner = %s AND status = 'processing'",
        _owner(first))]
    topology.start_worker()
    load.wait_until_created(TERM_AT)
    second.send(signal.SIGTERM)
    code = second.wait(timeout=60)
    topology.start_worker()
    return orphans, code


def _readyz(base: str) -> int:
    try:
        return requests.get(base + "/readyz", timeout=5).status_code
    except requests.RequestException:
        return 0


def _wait_for_readyz(topology: Topology, status: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not all(_readyz(base) == status for base in topology.web_urls):
        assert time.monotonic() < deadline, f"/readyz never became {status}"
        time.sleep(0.2)


def _metric(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
        if match and all(f'{key}="{value}"' in (match.group(1) or "")
                         for key, value in labels.items()):
            total += float(match.group(2))
    return total


def _check_money(topology: Topology, ids: list[str], credit_micros: int) -> None:
    rows = _query(topology, "SELECT kind, count(*), coalesce(sum(amount_micros), 0) "
                            "FROM ledger_entries WHERE run_id = ANY(%s) GROUP BY kind", ids)
    by_kind = {kind: (count, total) for kind, count, total in rows}
    (costs,), = _query(topology, "SELECT sum(cost_micros) FROM runs WHERE id = ANY(%s)", ids)
    assert by_kind.get("charge", (0, 0))[0] == len(ids), by_kind
    assert "refund" not in by_kind, by_kind
    (balance, spent), = _query(
        topology, "SELECT u.balance_micros, k.spent_micros FROM users u "
                  "JOIN api_keys k ON k.user_id = u.id")
    assert balance == credit_micros - costs
    assert spent == costs


def _check_outputs(topology: Topology, ids: list[str]) -> None:
    """Every output, fetched from every web machine, is the stored file."""
    files = _query(topology, "SELECT name, sha256 FROM files WHERE run_id = ANY(%s)", ids)
    assert len(files) == len(ids)
    session = requests.Session()
    for name, digest in files:
        for base in topology.web_urls:
            response = session.get(f"{base}/files/generated/{name}", timeout=30)
            assert response.status_code == 200, (base, name, response.status_code)
            assert hashlib.sha256(response.content).hexdigest() == digest


def _check_metrics(topology: Topology, ids: list[str]) -> None:
    (costs,), = _query(topology, "SELECT sum(cost_micros) FROM runs WHERE id = ANY(%s)", ids)
    for base in topology.web_urls:
        text = requests.get(base + "/metrics", timeout=30,
                            headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
        assert _metric(text, "runbase_runs_created_total", model=MODEL) == len(ids)
        assert _metric(text, "runbase_runs_succeeded_total", model=MODEL) == len(ids)
        assert _metric(text, "runbase_runs_failed_total") == 0
        assert _metric(text, "runbase_charged_micros_total") == costs
        assert _metric(text, "runbase_refunded_micros_total") == 0
        assert _metric(text, "runbase_runs_active") == 0


def _check_outage(topology: Topology) -> None:
    """PostgreSQL down for OUTAGE_SECONDS: /readyz 503 on every machine; back: 200, and
    the workers run new runs again."""
    topology.postgres.pause()
    went_down = time.monotonic()
    try:
        _wait_for_readyz(topology, 503, timeout=OUTAGE_SECONDS)
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - went_down)))
    finally:
        topology.postgres.resume()
    _wait_for_readyz(topology, 200)
    response = requests.post(topology.web_urls[1] + "/api/v1/runs", headers=topology.headers,
                             json={"model": MODEL, "input": {"prompt": "after the outage"}},
                             timeout=30)
    assert response.status_code == 201, response.text
    _wait_until_all_ended(topology, [response.json()["id"]], timeout=60)
    (status,), = _query(topology, "SELECT status FROM runs WHERE id = %s", response.json()["id"])
    assert status == "succeeded", topology.log_tails()


def test_scaled_out_deployment_survives_worker_loss_and_a_database_outage():
    credit_usd = 100_000
    with Topology(webs=2, workers=2, latency=LATENCY, credit_usd=str(credit_usd),
                  s3=True) as topology:
        load = Load(topology, RUNS)
        with ThreadPoolExecutor(CLIENTS) as pool:
            futures = load.start(pool)
            orphans, term_exit_code = _disrupt_workers(topology, load)
            for future in futures:
                future.result()
        assert load.errors == [], load.errors[:5]
        assert term_exit_code == 0, topology.log_tails()
        assert orphans, "the killed worker held no run: the test proved nothing"
        ids = load.created
        assert len(ids) == RUNS
        _wait_until_all_ended(topology, ids)
        statuses = dict(_query(topology, "SELECT status, count(*) FROM runs "
                                         "WHERE id = ANY(%s) GROUP BY status", ids))
        assert statuses == {"succeeded": RUNS}, (statuses, topology.log_tails())
        _check_money(topology, ids, credit_usd * 1_000_000)
        _check_outputs(topology, ids)
        _check_metrics(topology, ids)
        _check_outage(topology)
