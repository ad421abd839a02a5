"""Does adding workers (and web processes) add throughput? The deployment of `deploy/`
(PostgreSQL, Redis, gunicorn with deploy/gunicorn.conf.py, standalone workers; started by
tests/support/topology.py) against a fake provider answering in 0 ms and in 2 s.

    python bench/scale.py [--workers 1,2,4] [--web 1,2] [--latency 0,2] [--rounds 3]

For each provider latency and each number of gunicorn processes, the worker counts take
turns (1, 2, 4, 1, 2, 4 ...): each turn sends `--runs` runs from `--clients` threads and
waits until all have ended. Printed per turn: completed runs per second (first create to
last completion), create → succeeded latency p50/p99, the CPU other processes used, and
where our CPU went (web, workers, PostgreSQL, provider fake, this client). The summary
gives the medians and the ratio to one worker.

On a 2-core machine this cannot scale linearly: with a 0 ms provider everything shares
two cores, so what it shows is that another worker never costs throughput; with a 2 s
provider, the runs in flight (workers × RUNBASE_WORKER_THREADS) set the pace.
Files are on one shared local directory here (one machine); S3 adds its own latency.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import harness  # noqa: E402
from tests.support.topology import MODEL, Topology  # noqa: E402


def options() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    numbers = lambda text: [float(v) for v in text.split(",")]  # noqa: E731
    counts = lambda text: [int(v) for v in text.split(",")]  # noqa: E731
    parser.add_argument("--workers", type=counts, default=[1, 2, 4])
    parser.add_argument("--web", type=counts, default=[1, 2], help="gunicorn processes")
    parser.add_argument("--latency", type=numbers, default=[0.0, 2.0], help="provider seconds")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=300, help="runs per turn, 0 ms provider")
    parser.add_argument("--slow-runs", type=int, default=96, help="runs per turn, slow provider")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--worker-threads", type=int, default=8)
    parser.add_argument("--noise", type=float, default=0.10,
                        help="leave out turns where others used this share of the CPU")
    return parser.parse_args()


class Roles:
    """Where our CPU goes, by role, between two readings."""

    def __init__(self, topology: Topology):
        self.topology = topology

    def _roots(self) -> dict[str, list[int]]:
        top = self.topology
        return {"web": [p.pid for p in top.web_processes_ if p.alive()],
                "workers": [p.pid for p in top.worker_processes if p.alive()],
                "postgres": [harness.postmaster_pid(top.postgres.datadir) or 0],
                "provider": [top.provider.pid], "redis": [top.redis.process.pid]}

    def read(self) -> dict[str, int]:
        """CPU ticks so far per role (process trees)."""
        return {role: sum(harness.tree_ticks(pids).values())
                for role, pids in self._roots().items()}


def turn(topology: Topology, count: int, clients: int, roles: Roles, shares: list):
    """Create `count` runs, wait for all to end; (runs/s, p50 ms, p99 ms, failures)."""
    client = harness.JsonClient(topology.web_urls[0], topology.headers)

    def create(index: int) -> str:
        body = {"model": MODEL, "input": {"prompt": f"a lighthouse, take {index}"}}
        status, run = client.post("/api/v1/runs", body)
        if status != 201:
            raise RuntimeError(f"create answered {status}: {run}")
        return run["id"]

    database = topology.database_url.replace("postgresql+psycopg", "postgresql")
    writes_before = transactions_written(database)
    before, started, own = roles.read(), time.monotonic(), time.process_time()
    with ThreadPoolExecutor(clients) as pool:
        ids = list(pool.map(create, range(count)))
    with psycopg.connect(database, autocommit=True) as connection:
        while connection.execute("SELECT count(*) FROM runs WHERE id = ANY(%s) AND status IN "
                                 "('pending', 'processing')", (ids,)).fetchone()[0]:
            time.sleep(0.05)
        rows = connection.execute(
            "SELECT status, extract(epoch FROM created_at), extract(epoch FROM completed_at) "
            "FROM runs WHERE id = ANY(%s)", (ids,)).fetchall()
    wall = time.monotonic() - started
    after = roles.read()
    share = {role: (after[role] - before.get(role, 0)) / harness.TICK / wall for role in after}
    share["client"] = (time.process_time() - own) / wall
    share["writes/run"] = (transactions_written(database) - writes_before) / count
    shares.append(share)
    done = [(float(end) - float(begin)) * 1000 for status, begin, end in rows
            if status == "succeeded"]
    first = min(float(begin) for _status, begin, _end in rows)
    last = max(float(end) for _status, _begin, end in rows)
    done.sort()
    p99 = done[min(len(done) - 1, int(len(done) * 0.99))] if done else None
    return (len(done) / (last - first), statistics.median(done) if done else None, p99,
            count - len(done))


def transactions_written(database: str) -> int:
    """Transactions that wrote something so far: the server's transaction id counter
    (this reading takes one). Not pg_stat_database's commit count: that lags by up to a
    second per connection, and counts each listening worker's reading of NOTIFYs as a
    transaction, though only when that connection next sends a statement."""
    with psycopg.connect(database, autocommit=True) as connection:
        return int(connection.execute("SELECT pg_current_xact_id()::text").fetchone()[0])


def with_workers(topology: Topology, wanted: int) -> None:
    """Start or stop workers until `wanted` run, then let them settle."""
    while len(topology.worker_processes) < wanted:
        topology.start_worker()
    while len(topology.worker_processes) > wanted:
        topology.worker_processes.pop().stop()
    harness.wait_until_quiet([p.pid for p in topology.worker_processes], timeout=30)


class WorkerCountResult(NamedTuple):
    """What one worker count made in one setting: medians over its quiet runs."""

    rate: float  # completed runs/s
    p50: float  # create -> succeeded, ms
    p99: float
    foreign: float  # share of the CPU other processes took
    cpu: dict  # cores by role, and "writes/run"
    kept: int  # runs counted
    #: This count's runs/s over the fewest workers', within each round (harness.paired_ratios).
    paired: list[float]


def measure_setting(args, meter: harness.CpuMeter, latency: float,
                    web: int) -> dict[int, WorkerCountResult]:
    """Interleave the worker counts for one latency and web size; medians by count."""
    with Topology(webs=1, workers=0, latency=latency, web_processes=web,
                  worker_threads=args.worker_threads, credit_usd="10000000") as topology:
        return interleave_workers(args, meter, topology, latency)


def interleave_workers(args, meter: harness.CpuMeter, topology: Topology,
                       latency: float) -> dict[int, WorkerCountResult]:
    """The worker counts in turns on a running topology; medians by count."""
    meter.extra_roots = [harness.postmaster_pid(topology.postgres.datadir)]
    roles, count = Roles(topology), args.runs if latency < 0.5 else args.slow_runs
    role_shares: dict[int, list] = {n: [] for n in args.workers}

    def side(workers: int):
        def prepare():
            with_workers(topology, workers)
            turn(topology, min(count, 32), args.clients, roles, [])  # warm-up, not counted
            return lambda: turn(topology, count, args.clients, roles, role_shares[workers])
        return prepare

    # One full turn first, not counted: the first turn on a fresh topology (cold caches,
    # an empty runs table) ran up to a quarter slower, and it always fell to the first
    # worker count, which flattered the others' ratios.
    with_workers(topology, args.workers[0])
    turn(topology, count, args.clients, roles, [])
    samples = harness.interleave([(f"{n} worker(s)", side(n)) for n in args.workers],
                                 rounds=args.rounds, meter=meter, noise=args.noise,
                                 unit="runs/s")
    results = {}
    fewest = samples[f"{min(args.workers)} worker(s)"]
    for n in args.workers:
        runs = samples[f"{n} worker(s)"]
        kept = [s for s in runs if not s.noisy and not s.errors] or runs
        cpu = {role: statistics.median(share[role] for share in role_shares[n])
               for role in role_shares[n][0]}
        results[n] = WorkerCountResult(
            rate=statistics.median(s.value for s in kept),
            p50=statistics.median(s.p50 for s in kept if s.p50 is not None),
            p99=statistics.median(s.p99 for s in kept if s.p99 is not None),
            foreign=statistics.median(s.cpu.foreign for s in kept), cpu=cpu, kept=len(kept),
            paired=harness.paired_ratios(runs, fewest))
    return results


def report(latency: float, web: int, results: dict[int, WorkerCountResult]) -> None:
    """The summary table of one setting."""
    base = results[min(results)].rate
    print(f"\nprovider {latency:g} s, gunicorn x {web}: medians")
    for workers, result in sorted(results.items()):
        cpu = dict(result.cpu)
        per_run = cpu.pop("writes/run")
        where = ", ".join(f"{role} {share:.2f}" for role, share in
                          sorted(cpu.items(), key=lambda item: -item[1]))
        print(f"  {workers} worker(s): {result.rate:7.1f} runs/s  "
              f"ratio {result.rate / base:4.2f}  p50 {result.p50:7.0f} ms  "
              f"p99 {result.p99:7.0f} ms  others {result.foreign:4.1%}  n={result.kept}  "
              f"writing transactions per run {per_run:.2f}  cores used: {where}")
        # Steadier than runs/s on a full machine: what one more worker costs shows here
        # even when the rounds' rates scatter.
        cost = ", ".join(f"{role} {share / result.rate * 1000:.2f}" for role, share in
                         sorted(cpu.items(), key=lambda item: -item[1]))
        print(f"      CPU per run, ms: {cost}")
        if workers != min(results):
            print(f"      against {min(results)} worker(s) "
                  f"{harness.describe_paired(result.paired)}")
    print(flush=True)


def main() -> None:
    """Every latency × web size, worker counts interleaved within each."""
    args = options()
    meter = harness.CpuMeter()
    print(f"{harness.CORES} cores; {args.clients} client threads; worker threads "
          f"{args.worker_threads}; runs per turn {args.runs} (0 ms) / {args.slow_runs} (slow)",
          flush=True)
    for latency in args.latency:
        for web in args.web:
            print(f"provider {latency:g} s, gunicorn x {web}", flush=True)
            report(latency, web, measure_setting(args, meter, latency, web))


if __name__ == "__main__":
    main()
