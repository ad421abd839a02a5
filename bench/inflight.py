"""Many runs in flight on one standalone worker process, against a fake async provider.

Creates `--runs` runs (default 10,000) of a Replicate model through the service layer
(committed in batches), while one `flask --app app worker` process serves them against
bench/fake_async_provider.py, whose jobs stay "processing" for `--job-seconds`. Once
every run has reached the provider (or `--settle` seconds passed) and `--warmup` more
seconds took the polls to the schedule's steady step, it measures the
steady state for `--measure` seconds, once a second:

* the worker's CPU (utime + stime from /proc/<pid>/stat, in cores) and its peak RSS
  (VmHWM);
* the polls per second the fake saw, and on PostgreSQL the transactions per second
  (pg_stat_database.xact_commit + xact_rollback of the bench database);
* the CPU the fake, PostgreSQL and this script used, and what every other process on
  the machine used (from /proc/stat), so that noisy runs can be told apart;
* for a probe run created every `--probe-interval` seconds while the others are in
  flight, the time from its commit to the fake receiving its create request.

Prints medians (latencies also as p95 and max). Usage, from the repository root:

    python bench/inflight.py --runs 1000 --db sqlite
    python bench/inflight.py --runs 10000 --db postgresql
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.fake_async_provider import TOKEN  # noqa: E402
from runbase_web import create_app, state  # noqa: E402
from runbase_web.cli import upgrade_database  # noqa: E402
from runbase_web.extensions import db  # noqa: E402
from runbase_web.services import accounts  # noqa: E402

MODEL = "replicate/bench/painter"
PRICE_MICROS = 1000
#: An operator-added Replicate model, as the provider tests define theirs.
CATALOG_ENTRY = {
    "id": MODEL, "name": "Bench Painter", "kind": "image", "adapter": "replicate",
    "upstream": "bench/painter", "description": "A fake async model for bench/inflight.py.",
    "requires_env": ["REPLICATE_API_TOKEN"], "deadline_seconds": 3600, "max_attempts": 3,
    "input_schema": {"type": "object", "required": ["prompt"], "additionalProperties": False,
                     "properties": {"prompt": {"type": "string", "minLength": 1}}},
    "price": {"micros": PRICE_MICROS},
}
TICKS = os.sysconf("SC_CLK_TCK")


# --- processes and /proc ---------------------------------------------------------------------


def process_seconds(pid: int) -> float:
    """CPU seconds (user + system) a process has used; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def children_of(pid: int) -> list[int]:
    """Direct children of a process (PostgreSQL's backends under its postmaster)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if parent == pid:
                found.append(int(entry.name))
    return found


def machine_busy_seconds() -> float:
    """CPU seconds every process on the machine has used (all of /proc/stat's busy time)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / TICKS


def status_kib(pid: int, field: str) -> int:
    """A /proc/<pid>/status value in KiB (VmHWM, VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


# --- the pieces ---------------------------------------------------------------------------------


def start_fake(job_seconds: float) -> tuple[subprocess.Popen, str]:
    """The fake provider in its own process; returns it and its base URL."""
    process = subprocess.Popen([sys.executable, str(REPO / "bench" / "fake_async_provider.py"),
                                "--job-seconds", str(job_seconds)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    port = process.stdout.readline().split()[1]
    return process, f"http://127.0.0.1:{port}"


def fake_stats(base_url: str) -> dict:
    """The fake's counters."""
    with urllib.request.urlopen(base_url + "/_stats", timeout=10) as response:
        return json.load(response)


def start_database(kind: str, workdir: Path):
    """(SQLAlchemy URL, PostgresServer or None)."""
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'bench.db'}", None
    from tests.support.postgres import PostgresServer  # the tests' private-cluster helper

    server = PostgresServer().start()
    return server.create_database("bench"), server


def pg_transactions(server) -> int:
    """Commits and rollbacks of the bench database so far (PostgreSQL's statistics)."""
    import psycopg

    with psycopg.connect(server.conninfo("bench"), autocommit=True) as connection:
        row = connection.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database"
                                 " WHERE datname = 'bench'").fetchone()
        connection.execute("SELECT pg_stat_clear_snapshot()")
    return int(row[0])


def postmaster_pid(server) -> int:
    """The PostgreSQL server's main process."""
    return int((server.datadir / "postmaster.pid").read_text().split()[0])


def build_app(url: str, workdir: Path, fake_url: str, runs: int):
    """The app the runs are created in, its catalog and a user who can pay for them all."""
    catalog = workdir / "catalog.json"
    catalog.write_text(json.dumps({"models": [CATALOG_ENTRY]}))
    env = {"REPLICATE_API_TOKEN": TOKEN, "REPLICATE_BASE_URL": fake_url + "/v1"}
    app = create_app({"DATABASE_URL": url, "DATA_DIR": str(workdir / "data"),
                      "CATALOG_PATH": str(catalog), "PROVIDER_ENV": env, "RATE_LIMIT": None})
    upgrade_database(app)
    with app.app_context():
        user = accounts.create_user(db.session, "bench@example.com", "benchmark-pass",
                                    credit_micros=(runs + 10_000) * PRICE_MICROS)
        db.session.commit()
        return app, user.id, env, catalog


def start_worker(url: str, workdir: Path, catalog: Path, env: dict, threads: int | None,
                 log) -> subprocess.Popen:
    """One standalone worker process (`flask --app app worker`)."""
    variables = dict(os.environ, RUNBASE_DATABASE_URL=url, RUNBASE_DATA_DIR=str(workdir / "data"),
                     RUNBASE_CATALOG=str(catalog), **env)
    command = [sys.executable, "-m", "flask", "--app", "app", "worker"]
    if threads:
        command += ["--threads", str(threads)]
    return subprocess.Popen(command, cwd=REPO, env=variables, stdout=log, stderr=subprocess.STDOUT)


def create_runs(app, user_id: int, count: int, *, prefix: str, batch: int = 250) -> float:
    """Create `count` runs through the service layer, committing every `batch`; returns the
    time.time() of the last commit."""
    creator = state.run_creator(app)
    with app.app_context():
        for start in range(0, count, batch):
            for index in range(start, min(start + batch, count)):
                creator.create(db.session, user_id=user_id, model_id=MODEL,
                               raw_input={"prompt": f"{prefix}-{index}"}, source="api")
            db.session.commit()
        db.state(app).session.remove()
    return time.time()


# --- measuring ----------------------------------------------------------------------------------


class Sampler:
    """CPU of the worker, the fake, PostgreSQL, this script and everyone else, per interval."""

    def __init__(self, worker: int, fake: int, postmaster: int | None, pg_server):
        self.pids = {"worker": [worker], "fake": [fake], "bench": [os.getpid()]}
        self.postmaster, self.pg_server = postmaster, pg_server
        self.rows: list[dict] = []
        self._last = self._read()

    def _read(self) -> dict:
        pids = dict(self.pids)
        if self.postmaster:
            pids["postgres"] = [self.postmaster, *children_of(self.postmaster)]
        reading = {name: sum(process_seconds(pid) for pid in group) for name, group in pids.items()}
        reading["machine"] = machine_busy_seconds()
        reading["time"] = time.monotonic()
        reading["fake_stats"] = None
        reading["xacts"] = pg_transactions(self.pg_server) if self.pg_server else None
        return reading

    def sample(self, stats: dict) -> dict:
        """One interval's figures (cores, polls/s, transactions/s)."""
        now = self._read()
        now["fake_stats"] = stats
        last, self._last = self._last, now
        span = now["time"] - last["time"]
        row = {name: (now[name] - last[name]) / span
               for name in ("worker", "fake", "bench", "postgres", "machine") if name in now}
        row["others"] = row["machine"] - sum(row[name] for name in
                                             ("worker", "fake", "bench", "postgres") if name in row)
        if last["fake_stats"]:
            row["polls"] = (stats["polls"] - last["fake_stats"]["polls"]) / span
            row["creates"] = (stats["creates"] - last["fake_stats"]["creates"]) / span
        if now["xacts"] is not None:
            row["xacts"] = (now["xacts"] - last["xacts"]) / span
        self.rows.append(row)
        return row


def median_of(rows: list[dict], key: str) -> float | None:
    values = [row[key] for row in rows if key in row]
    return statistics.median(values) if values else None


def measure(args, sampler: Sampler, app, user_id: int, fake_url: str) -> dict[str, float]:
    """Sample once a second for `args.measure` seconds, creating a probe run every
    `args.probe_interval` seconds; returns each probe's commit time by name."""
    probes: dict[str, float] = {}
    end = time.monotonic() + args.measure
    next_probe = next_sample = time.monotonic()
    while time.monotonic() < end:
        if time.monotonic() >= next_probe:
            name = f"probe-{len(probes)}"
            probes[name] = create_runs(app, user_id, 1, prefix=name)
            next_probe += args.probe_interval
        if time.monotonic() >= next_sample:
            sampler.sample(fake_stats(fake_url))
            next_sample += 1.0
        time.sleep(0.02)
    return probes


def wait_for_probes(fake_url: str, probes: dict[str, float], timeout: float) -> dict:
    """The fake's arrival times of the probes, once all arrived or `timeout` passed."""
    deadline = time.monotonic() + timeout
    while True:
        seen = fake_stats(fake_url)["probes"]
        if all(f"{name}-0" in seen for name in probes) or time.monotonic() > deadline:
            return seen
        time.sleep(0.5)


def run_bench(args, kind: str) -> dict:
    """One measurement on one database; returns the figures."""
    workdir = Path(tempfile.mkdtemp(prefix="runbase-inflight-"))
    fake, fake_url = start_fake(args.job_seconds)
    url, pg = start_database(kind, workdir)
    worker = None
    log = open(workdir / "worker.log", "wb")
    try:
        app, user_id, env, catalog = build_app(url, workdir, fake_url, args.runs + args.probes)
        worker = start_worker(url, workdir, catalog, env, args.threads, log)
        time.sleep(2.0)  # its start-up (imports, first claims)
        started = time.time()
        last_create = create_runs(app, user_id, args.runs, prefix="bulk")
        create_seconds = last_create - started
        reached = None
        while time.time() - last_create < args.settle:
            if fake_stats(fake_url)["creates"] >= args.runs:
                reached = time.time() - last_create
                break
            time.sleep(0.5)
        at_settle = fake_stats(fake_url)["creates"]
        time.sleep(args.warmup)  # past the quick first polls: the schedule's steady step
        sampler = Sampler(worker.pid, fake.pid, postmaster_pid(pg) if pg else None, pg)
        sampler.sample(fake_stats(fake_url))  # the counters' starting point
        sampler.rows.clear()
        probes = measure(args, sampler, app, user_id, fake_url)
        seen = wait_for_probes(fake_url, probes, args.probe_wait)
        latencies = [seen[f"{name}-0"] - created if f"{name}-0" in seen else float("inf")
                     for name, created in probes.items()]
        peak_rss = status_kib(worker.pid, "VmHWM") / 1024
        return {"db": kind, "runs": args.runs, "create_seconds": create_seconds,
                "all_reached_after_last_create": reached, "reached_at_settle": at_settle,
                "rows": sampler.rows, "latencies": latencies, "peak_rss_mb": peak_rss,
                "probe_wait": args.probe_wait,
                "workdir": str(workdir)}
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        log.close()
        fake.stdin.close()
        fake.wait(timeout=10)
        if pg is not None:
            pg.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def report(result: dict) -> None:
    """Print one measurement's medians."""
    rows, latencies = result["rows"], sorted(result["latencies"])

    def fmt(key: str, scale: float = 1.0, unit: str = "") -> str:
        value = median_of(rows, key)
        return "n/a" if value is None else f"{value * scale:.2f}{unit}"
    reached = result["all_reached_after_last_create"]
    print(f"\n{result['db']}: {result['runs']} runs created in {result['create_seconds']:.1f} s; "
          + (f"all at the provider {reached:.1f} s after the last create" if reached is not None
             else f"only {result['reached_at_settle']} at the provider when measuring began"))
    print(f"  steady state, medians of {len(rows)} one-second samples:")
    print(f"  worker CPU      {fmt('worker')} cores   peak RSS {result['peak_rss_mb']:.0f} MB")
    print(f"  polls/s         {fmt('polls')}   creates/s seen {fmt('creates')}")
    print(f"  transactions/s  {fmt('xacts')} (PostgreSQL, whole database)")
    print(f"  CPU elsewhere   fake {fmt('fake')}, postgres {fmt('postgres')}, "
          f"this script {fmt('bench')}, other processes {fmt('others')} cores")
    if latencies:
        p95 = latencies[max(int(len(latencies) * 0.95) - 1, 0)]
        missing = sum(latency == float("inf") for latency in latencies)
        print(f"  new run -> provider: median {statistics.median(latencies) * 1000:.0f} ms, "
              f"p95 {p95 * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms "
              f"({len(latencies)} probes; inf: not there {result['probe_wait']:.0f} s after "
              f"measuring, {missing} of them)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--job-seconds", type=float, default=900.0,
                        help="how long each job stays processing at the fake")
    parser.add_argument("--settle", type=float, default=120.0,
                        help="at most this long for every run to reach the provider")
    parser.add_argument("--warmup", type=float, default=15.0,
                        help="wait this long after settling, until polls reach the "
                             "schedule's last step")
    parser.add_argument("--measure", type=float, default=30.0)
    parser.add_argument("--probes", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--probe-interval", type=float, default=1.0)
    parser.add_argument("--probe-wait", type=float, default=60.0,
                        help="after measuring, wait at most this long for the probes to arrive")
    parser.add_argument("--threads", type=int, default=None, help="worker threads (default: 8)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    args.probes = int(args.measure / args.probe_interval) + 2
    results = []
    for kind in (["sqlite", "postgresql"] if args.db == "both" else [args.db]):
        results.append(run_bench(args, kind))
        report(results[-1])
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
