"""Completed image runs per second, end to end, through Runbase (one gunicorn web process and
one standalone worker) against the LiteLLM proxy (one worker), both calling the same 0 ms
fake OpenAI Images API on 127.0.0.1, interleaved (Runbase, LiteLLM, Runbase, ...):

    python bench/image_runs.py                          # 500 runs a side, 3 rounds
    python bench/image_runs.py --runs 200 --rounds 3 --clients 8 --db postgres
    python bench/image_runs.py --vs-tree ../runbase-before --runs 800 --rounds 4
    python bench/image_runs.py --vs-tree ../runbase-before --backlog --runs 5000

With --vs-tree, the baseline is Runbase itself from another checkout (a worktree of an
earlier commit, say), set up the same way: a change is measured against the tree
without it, interleaved, instead of one tree after the other.

With --backlog (Runbase sides only), each round first creates its runs while no worker
runs, then starts the worker and measures how fast it drains that queue: runs over (last
completion - worker start, its start-up of about a second included); p50/p99 are worker
start -> completed. A burst of creates meets a queue like this.

Runbase: the clients create `openai/gpt-image-1` runs with POST /api/v1/runs, then poll
until every one has succeeded; a run is done at its `completedAt`, and the rate is runs
over (last completion - first create). LiteLLM: the clients call POST
/v1/images/generations, which answers with the image; the rate is runs over (last answer
- first request). p50/p99 are per run: submitted -> completed.

LiteLLM runs from its own virtualenv, bench/.venv-litellm (or $LITELLM_VENV); without it
only the Runbase side runs, and the script says how to make it.
"""
from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
from harness import ROOT  # noqa: E402

UPSTREAM_KEY = "sk-test"  # what the fake expects
LITELLM_KEY = "sk-bench-master"
MODEL = "openai/gpt-image-1"  # Runbase's id; the fake and LiteLLM call it gpt-image-1
LITELLM_CONFIG = """\
model_list:
  - model_name: gpt-image-1
    litellm_params:
      model: openai/gpt-image-1
      api_base: {upstream}/v1
      api_key: {key}
"""


def options() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=500, help="runs per side and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8, help="concurrent client threads")
    parser.add_argument("--warmup-runs", type=int, default=20,
                        help="runs before each measured round, not counted")
    parser.add_argument("--web-threads", type=int, default=8,
                        help="threads of Runbase's one gunicorn (gthread) web process")
    parser.add_argument("--worker-threads", type=int, default=8,
                        help="threads of Runbase's standalone worker")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--noise", type=float, default=0.10,
                        help="leave out runs where other processes used this share or more")
    parser.add_argument("--quiet-wait", type=float, default=20,
                        help="seconds each run may wait for other processes to quieten down")
    parser.add_argument("--extra-rounds", type=int, default=0,
                        help="more rounds, at most this many, while a side has fewer than "
                             "--rounds quiet runs")
    parser.add_argument("--timeout", type=float, default=600, help="seconds a round may take")
    parser.add_argument("--backlog", action="store_true",
                        help="create each round's runs with no worker running, then time "
                             "the worker draining them (needs --vs-tree)")
    parser.add_argument("--vs-tree", type=Path,
                        help="another checkout of Runbase to compare with, instead of LiteLLM")
    args = parser.parse_args()
    if args.backlog and args.vs_tree is None:
        parser.error("--backlog compares two Runbase trees: give --vs-tree")
    return args


def litellm_venv() -> Path | None:
    """LiteLLM's virtualenv, or None (after saying how to make it)."""
    venv = Path(os.environ.get("LITELLM_VENV") or ROOT / "bench/.venv-litellm")
    if (venv / "bin/litellm").exists():
        return venv
    print(f"LiteLLM is not installed at {venv}; only the Runbase side runs. To compare, run:\n"
          "  python3 -m venv bench/.venv-litellm && "
          "bench/.venv-litellm/bin/pip install 'litellm[proxy]'\n", flush=True)
    return None


def fan_out(clients: int, count: int, one) -> list:
    """Call `one(i)` for i in range(count) from `clients` threads (each thread keeps its
    own connection alive, as a real client would: see harness.JsonClient)."""
    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(one, range(count)))


def epoch(iso: str) -> float:
    """Seconds since the epoch of an API time such as 2026-06-01T12:00:04.200Z."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def runbase_side(args, web: harness.Server, key: str, worker: harness.Server | None = None):
    """A side for harness.interleave: warm up, then create `--runs` runs and wait for all.
    With `worker` (--backlog), which is not running: create the runs, then start it and
    time the drain."""
    client = harness.JsonClient(web.url, {"Authorization": f"Bearer {key}"})
    prompts = itertools.count()

    def create(_i):
        submitted = time.time()
        body = {"model": MODEL, "input": {"prompt": f"a lighthouse, take {next(prompts)}"}}
        status, run = client.post("/api/v1/runs", body)
        if status != 201:
            raise RuntimeError(f"create answered {status}: {run}")
        return run["id"], submitted

    def finish(created: dict[str, float], started: float, timeout: float):
        """Wait for the runs; (runs/s from `started`, p50, p99, errors), latencies from
        each run's own time in `created`."""
        finished = wait_for_runs(client, set(created), started + timeout)
        ends = {run["id"]: epoch(run["completedAt"]) for run in finished
                if run["status"] == "succeeded"}
        errors = len(created) - len(ends)
        if not ends:
            return 0.0, None, None, errors
        latencies = sorted((ends[i] - created[i]) * 1000 for i in ends)
        return (len(ends) / (max(ends.values()) - started), statistics.median(latencies),
                percentile(latencies, 99), errors)

    def batch(count: int, timeout: float):
        """Create `count` runs; wait until none is pending; (value, p50, p99, errors)."""
        started = time.time()
        return finish(dict(fan_out(args.clients, count, create)), started, timeout)

    def drain(ids: list[str]):
        """Start the worker on the queue of `ids`; time it until none is pending."""
        started = time.time()
        worker.start(settle=False)  # it has work at once, so it never goes quiet
        try:
            return finish(dict.fromkeys(ids, started), started, args.timeout)
        finally:
            worker.stop()

    def prepare():
        if worker is not None:  # the queue is made outside the measured stretch
            ids = [run_id for run_id, _submitted in fan_out(args.clients, args.runs, create)]
            return lambda: drain(ids)
        if args.warmup_runs:
            batch(args.warmup_runs, args.timeout)
        return lambda: batch(args.runs, args.timeout)
    return prepare


def wait_for_runs(client: harness.JsonClient, ids: set[str], deadline: float) -> list[dict]:
    """Poll until no run of the account is pending or processing, then read back `ids`.

    Through the list endpoint, two small requests a sweep, rather than a GET per run: the
    web process and the worker share two cores, and per-run polling would make this a
    benchmark of polling.
    """
    while any(client.get("/api/v1/runs", {"status": status, "limit": 1})[1]["data"]
              for status in ("pending", "processing")):
        if time.time() > deadline:
            raise RuntimeError("runs still unfinished at the round's deadline (--timeout)")
        time.sleep(0.05)
    found, after = [], None
    while len(found) < len(ids):  # newest first: this batch's runs come before older ones
        _status, page = client.get("/api/v1/runs",
                                   {"limit": 100, **({"after": after} if after else {})})
        found += [run for run in page["data"] if run["id"] in ids]
        if not page["hasMore"]:
            break
        after = page["nextCursor"]
    return found


def litellm_side(args, proxy: harness.Server):
    """A side for harness.interleave: warm up, then `--runs` image generations."""
    client = harness.JsonClient(proxy.url, {"Authorization": f"Bearer {LITELLM_KEY}"})

    def batch(count: int):
        def generate(i):
            submitted = time.time()
            status, answer = client.post("/v1/images/generations",
                                         {"model": "gpt-image-1", "prompt": f"a lighthouse, {i}",
                                          "n": 1, "size": "1024x1024"})
            ok = status == 200 and bool(answer["data"][0]["b64_json"])
            return ok, submitted, time.time()

        started = time.time()
        results = fan_out(args.clients, count, generate)
        done = [(submitted, ended) for ok, submitted, ended in results if ok]
        if not done:
            return 0.0, None, None, count
        latencies = sorted((ended - submitted) * 1000 for submitted, ended in done)
        return (len(done) / (max(ended for _, ended in done) - started),
                statistics.median(latencies), percentile(latencies, 99), count - len(done))

    def prepare():
        if args.warmup_runs:
            batch(args.warmup_runs)
        return lambda: batch(args.runs)
    return prepare


def percentile(ordered: list[float], percent: float) -> float:
    """The nearest-rank percentile of an ascending list."""
    return ordered[min(len(ordered) - 1, max(0, round(percent / 100 * len(ordered)) - 1))]


def main() -> None:
    """Start the fake upstream, Runbase (web + worker) and LiteLLM; interleave; summarize."""
    args = options()
    venv = None if args.vs_tree else litellm_venv()
    meter = harness.CpuMeter()
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-images-")))
        log_dir = str(scratch)
        port = harness.free_port()
        upstream = stack.enter_context(harness.Server(
            "fake-openai", [sys.executable, "bench/fake_openai.py", str(port), UPSTREAM_KEY],
            port=port, ready_path="/v1/images/generations", log_dir=log_dir))
        database_url = None
        if args.db == "postgres":
            postgres = harness.start_postgres()
            stack.callback(postgres.stop)
            meter.extra_roots = [harness.postmaster_pid(postgres.datadir)]
            database_url = postgres.create_database("runbase_images")
        def runbase(name: str, tree: Path, database: str | None):
            """Runbase from `tree` (web + worker), as a side named `name`."""
            env = harness.runbase_env(str(scratch / name), database,
                                      OPENAI_API_KEY=UPSTREAM_KEY,
                                      OPENAI_BASE_URL=f"{upstream.url}/v1",
                                      RUNBASE_WORKER_THREADS=str(args.worker_threads))
            key = harness.prepare_runbase(env, tree=tree)
            web = stack.enter_context(harness.gunicorn(
                f"{name}-web", "app:app", workers=1, worker_class="gthread",
                threads=args.web_threads, chdir=tree, env=env, ready_path="/api/v1/models",
                log_dir=log_dir))
            worker = harness.Server(  # no port: the worker serves nothing
                f"{name}-worker", [sys.executable, "-m", "flask", "--app", "app", "worker"],
                port=0, env=env, cwd=tree, ready_path=None,
                ready_text=None if args.backlog else "running", log_dir=log_dir)
            if args.backlog:  # started for each round's drain (runbase_side)
                return name, runbase_side(args, web, key, worker)
            stack.enter_context(worker)
            return name, runbase_side(args, web, key)

        sides = [runbase("runbase", ROOT, database_url)]
        baseline = "litellm"
        if args.vs_tree is not None:
            baseline = "other-tree"
            other_url = postgres.create_database("runbase_other") if database_url else None
            sides.append(runbase(baseline, args.vs_tree.resolve(), other_url))
        elif venv is not None:
            port = harness.free_port()
            config = scratch / "litellm.yaml"
            config.write_text(LITELLM_CONFIG.format(upstream=upstream.url, key=UPSTREAM_KEY))
            proxy = stack.enter_context(harness.Server(
                "litellm", [str(venv / "bin/litellm"), "--config", str(config), "--host",
                            "127.0.0.1", "--port", str(port), "--num_workers", "1"],
                port=port, cwd=scratch, ready_path="/health/liveliness", log_dir=log_dir,
                env=harness.clean_env(LITELLM_MASTER_KEY=LITELLM_KEY,
                                      LITELLM_LOCAL_MODEL_COST_MAP="True")))
            sides.append(("litellm", litellm_side(args, proxy)))
        warmup = 0 if args.backlog else args.warmup_runs  # a drain has no warm-up
        print(f"{args.runs} runs per side and round, {args.clients} client threads, "
              f"{warmup} warm-up runs first; Runbase: gunicorn 1 x {args.web_threads} "
              f"threads + worker x {args.worker_threads} threads on {args.db}; "
              f"noisy = others >= {args.noise:.0%} of {harness.CORES} cores"
              + (f"; baseline: Runbase from {args.vs_tree}" if args.vs_tree else "")
              + ("; each round drains a backlog made with no worker running"
                 if args.backlog else ""), flush=True)
        samples = harness.interleave(sides, rounds=args.rounds, meter=meter, noise=args.noise,
                                     unit="runs/s", quiet_wait=args.quiet_wait,
                                     extra_rounds=args.extra_rounds)
        harness.summarize(samples, ours="runbase", baseline=baseline, unit="runs/s",
                          noise=args.noise)


if __name__ == "__main__":
    main()
