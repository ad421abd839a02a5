"""Requests per second over HTTP with wrk, gunicorn sync workers on both sides, each row
against its baseline in the same run, interleaved (ours, baseline, ours, baseline ...):

    get-sqlite     GET /api/v1/runs/:id, SQLite (WAL)   vs bare Flask /json (baselines/bare_app.py)
    get-pg         GET /api/v1/runs/:id, PostgreSQL     vs bare Flask /json
    create-sqlite  POST /api/v1/runs, SQLite (WAL)      vs one debit + insert transaction
    create-pg      POST /api/v1/runs, PostgreSQL        vs one debit + insert transaction
                                                          (baselines/debit_insert_app.py)

    python bench/http_throughput.py                       # every row, 3 rounds of 8 s
    python bench/http_throughput.py --only get-sqlite,create-sqlite --rounds 5
    python bench/http_throughput.py --db sqlite --rounds 3 --duration 3 --warmup 1
    python bench/http_throughput.py --only get-pg --one-select

With --one-select the GET rows gain a third side, interleaved with the other two: a bare
Flask app reading one row by primary key on the same database (baselines/one_select_app.py),
what a single database read costs a Flask process here, and the ratio to it.

Runbase runs as `gunicorn app:app` with its rate limit off and no worker (created runs stay
pending), on a temp SQLite file or a private PostgreSQL server (the tests' helper, fsync
off). Runs where other processes used --noise or more of the machine's CPU, or that got
errors, are shown but left out of the medians.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import urllib.request
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
from harness import ROOT  # noqa: E402

ROWS = {  # row -> (database, request)
    "get-sqlite": ("sqlite", "get"), "get-pg": ("postgres", "get"),
    "create-sqlite": ("sqlite", "create"), "create-pg": ("postgres", "create"),
}
#: A valid create for the cheapest local model (1000 micro-USD, no provider needed).
SKETCH = json.dumps({"model": "local/sketch", "input": {"prompt": "a lighthouse at dusk"}})


def options() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(ROWS),
                        help=f"comma-separated rows of: {', '.join(ROWS)}")
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of wrk before each run")
    parser.add_argument("--threads", type=int, default=1, help="wrk -t")
    parser.add_argument("--connections", type=int, default=16, help="wrk -c")
    parser.add_argument("--workers", type=int, default=5, help="gunicorn sync workers per side")
    parser.add_argument("--one-select", action="store_true",
                        help="GET rows: also measure a bare Flask app doing one SELECT")
    parser.add_argument("--noise", type=float, default=0.10,
                        help="leave out runs where other processes used this share or more")
    parser.add_argument("--quiet-wait", type=float, default=20,
                        help="seconds each run may wait for other processes to quieten down")
    parser.add_argument("--extra-rounds", type=int, default=0,
                        help="more rounds, at most this many, while a side has fewer than "
                             "--rounds quiet runs")
    args = parser.parse_args()
    unknown = set(args.only.split(",")) - set(ROWS)
    if unknown:
        parser.error(f"unknown rows: {', '.join(sorted(unknown))}")
    dbs = {"sqlite", "postgres"} if args.db == "both" else {args.db}
    args.rows = [row for row in ROWS if row in args.only.split(",") and ROWS[row][0] in dbs]
    if not args.rows:
        parser.error("no row left to run with this --only and --db")
    return args


def wrk_side(args, url: str, script: str | None):
    """A side for harness.interleave: warm up with wrk, then measure one wrk run."""
    def prepare():
        if args.warmup > 0:
            harness.run_wrk(url, seconds=args.warmup, threads=args.threads,
                            connections=args.connections, script=script)

        def measured():
            result = harness.run_wrk(url, seconds=args.duration, threads=args.threads,
                                     connections=args.connections, script=script)
            return result.rps, result.p50, result.p99, result.errors
        return measured
    return prepare


def create_run(base_url: str, key: str) -> str:
    """Create one run over HTTP (for the GET rows to read); returns its id."""
    request = urllib.request.Request(
        f"{base_url}/api/v1/runs", data=SKETCH.encode(), method="POST",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["id"]


def main() -> None:
    """Start the servers each selected row needs, run the rows, print the summaries."""
    args = options()
    print(f"gunicorn sync x{args.workers} per side, wrk -t{args.threads} -c{args.connections}, "
          f"{args.duration:g} s runs after {args.warmup:g} s of warm-up, {args.rounds} rounds, "
          f"noisy = others >= {args.noise:.0%} of {harness.CORES} cores", flush=True)
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-http-")))
        bare = None
        if any(ROWS[row][1] == "get" for row in args.rows):
            bare = stack.enter_context(harness.gunicorn(
                "bare", "bare_app:app", workers=args.workers, chdir=ROOT / "bench/baselines",
                env=harness.clean_env(), ready_path="/json", log_dir=str(scratch)))
        for database in ("sqlite", "postgres"):
            rows = [row for row in args.rows if ROWS[row][0] == database]
            if rows:
                run_rows(args, database, rows, bare, scratch)


def run_rows(args, database: str, rows: list[str], bare, scratch: Path) -> None:
    """The rows of one database: Runbase (and the debit baseline) on it, then each row."""
    meter = harness.CpuMeter()
    with ExitStack() as servers:
        if database == "sqlite":
            runbase_url = None  # Runbase's default: runbase.db in its data dir, in WAL mode
            debit_url = f"sqlite:///{scratch}/debit.db"
            reader_url = f"sqlite:///{scratch}/one-select.db"
        else:
            postgres = harness.start_postgres()
            servers.callback(postgres.stop)
            # pg_ctl detaches the server from us, but its backends are under test: ours.
            meter.extra_roots = [harness.postmaster_pid(postgres.datadir)]
            runbase_url = postgres.create_database("runbase_bench")
            debit_url = postgres.create_database("debit_bench")
            reader_url = postgres.create_database("one_select_bench") if args.one_select else None
        env = harness.runbase_env(str(scratch / f"runbase-{database}"), runbase_url)
        key = harness.prepare_runbase(env)
        runbase = servers.enter_context(harness.gunicorn(
            f"runbase-{database}", "app:app", workers=args.workers, chdir=ROOT, env=env,
            ready_path="/api/v1/models", log_dir=str(scratch)))
        auth = {"Authorization": f"Bearer {key}"}
        json_body = {"Content-Type": "application/json"}
        for row in rows:
            print(f"\n{row}", flush=True)
            if ROWS[row][1] == "get":
                run_id = create_run(runbase.url, key)
                script = harness.wrk_script(scratch / "get.lua", method="GET", headers=auth)
                sides = [("runbase", wrk_side(args, f"{runbase.url}/api/v1/runs/{run_id}", script)),
                         ("bare-json", wrk_side(args, f"{bare.url}/json", None))]
                if args.one_select:
                    reader = servers.enter_context(one_select_server(args, database, reader_url,
                                                                       scratch))
                    sides.append(("one-select", wrk_side(args, f"{reader.url}/runs/run_bench",
                                                         None)))
            else:
                debit = servers.enter_context(debit_server(args, database, debit_url, scratch))
                ours = harness.wrk_script(scratch / "create.lua", method="POST", body=SKETCH,
                                          headers={**auth, **json_body})
                theirs = harness.wrk_script(scratch / "debit.lua", method="POST", body=SKETCH,
                                            headers=json_body)
                sides = [("runbase", wrk_side(args, f"{runbase.url}/api/v1/runs", ours)),
                         ("debit-insert", wrk_side(args, f"{debit.url}/runs", theirs))]
            samples = harness.interleave(sides, rounds=args.rounds, meter=meter,
                                         noise=args.noise, unit="req/s",
                                         quiet_wait=args.quiet_wait,
                                         extra_rounds=args.extra_rounds)
            harness.summarize(samples, ours="runbase", baseline=sides[1][0], unit="req/s",
                              noise=args.noise)
            if "one-select" in samples:
                harness.print_ratio(samples, ours="runbase", baseline="one-select",
                                    unit="req/s", noise=args.noise)
                harness.print_ratio(samples, ours="one-select", baseline="bare-json",
                                    unit="req/s", noise=args.noise)


def one_select_server(args, database: str, url: str, scratch: Path) -> harness.Server:
    """The (unstarted) one-SELECT reference on `url` (its own SQLite file, or its own
    database on the PostgreSQL server Runbase uses), its one row written."""
    sys.path.insert(0, str(ROOT / "bench/baselines"))
    import one_select_app

    one_select_app.init_schema(url)
    return harness.gunicorn(
        f"one-select-{database}", "one_select_app:create_app()", workers=args.workers,
        chdir=ROOT / "bench/baselines", env=harness.clean_env(ONE_SELECT_DATABASE_URL=url),
        ready_path="/runs/run_bench", log_dir=str(scratch))


def debit_server(args, database: str, url: str, scratch: Path) -> harness.Server:
    """The (unstarted) debit + insert baseline on `url`, its schema made and its one user
    given a balance no run exhausts."""
    sys.path.insert(0, str(ROOT / "bench/baselines"))
    import debit_insert_app

    debit_insert_app.init_schema(url, balance_micros=10 ** 15)
    return harness.gunicorn(
        f"debit-{database}", "debit_insert_app:create_app()", workers=args.workers,
        chdir=ROOT / "bench/baselines", env=harness.clean_env(DEBIT_DATABASE_URL=url),
        ready_path="/", log_dir=str(scratch))


if __name__ == "__main__":
    main()
