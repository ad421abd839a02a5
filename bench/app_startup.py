"""How long building the app takes: with the catalog's metaschema checks cached (what every
app after the first in a process gets: each test, each reloaded gunicorn worker) against
the same build with the cache emptied first (the cost of a cold check).

    python bench/app_startup.py --runs 20
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runbase_web import create_app  # noqa: E402
from runbase_web.catalog import specs as catalog  # noqa: E402


def build(data_dir: str) -> None:
    create_app({"DATA_DIR": data_dir, "DATABASE_URL": f"sqlite:///{data_dir}/bench.db"})


def timed(runs: int, data_dir: str, *, cold: bool) -> list[float]:
    """Milliseconds per build."""
    samples = []
    for _ in range(runs):
        if cold:
            catalog._metaschema_problem.cache_clear()
        start = time.perf_counter()
        build(data_dir)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        build(data_dir)  # imports and first-time setup, not measured
        cold = timed(args.runs, data_dir, cold=True)
        warm = timed(args.runs, data_dir, cold=False)
    cold_ms, warm_ms = statistics.median(cold), statistics.median(warm)
    print(f"create_app, cold metaschema checks: median {cold_ms:.1f} ms")
    print(f"create_app, cached checks:          median {warm_ms:.1f} ms")
    print(f"ratio: {cold_ms / warm_ms:.1f}x faster with the cache")


if __name__ == "__main__":
    main()
