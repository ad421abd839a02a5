"""How long a CLI command takes as a whole process: `flask --app app create-key` against
a bare Flask app's command (bench/baselines/bare_app.py), interleaved A, B, A, B ... in
the same run, with the share of CPU other processes used during each run.

    python bench/cli_startup.py --rounds 7

Runs where other processes used more than --noise of the machine are reported and left
out of the medians.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def busy_jiffies() -> int:
    """CPU time all processes used so far, in clock ticks (Linux /proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return user + nice + system + irq + softirq + steal


def timed(command: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, share of all cores used by other processes meanwhile)."""
    tick = os.sysconf("SC_CLK_TCK")
    before_busy, before_child = busy_jiffies(), resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after_child = resource.getrusage(resource.RUSAGE_CHILDREN)
    ours = (after_child.ru_utime - before_child.ru_utime) + (after_child.ru_stime - before_child.ru_stime)
    everyone = (busy_jiffies() - before_busy) / tick
    foreign = max(everyone - ours, 0.0) / (wall * (os.cpu_count() or 1))
    return wall, foreign


def prepare(data_dir: str) -> dict:
    """A data dir with a migrated database and one account, as an operator would have."""
    env = dict(os.environ, RUNBASE_DATA_DIR=data_dir, RUNBASE_EMBEDDED_WORKER="0")
    env.pop("RUNBASE_DATABASE_URL", None)
    flask = [sys.executable, "-m", "flask", "--app", "app"]
    subprocess.run(flask + ["db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True)
    subprocess.run(flask + ["create-user", "bench@example.com", "--password", "a long password"],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    return env


def summary(name: str, values: list[float]) -> str:
    """median and min-max of a list of seconds, in milliseconds."""
    return (f"{name}: median {statistics.median(values) * 1000:.0f} ms "
            f"(min {min(values) * 1000:.0f}, max {max(values) * 1000:.0f}, n={len(values)})")


def main() -> None:
    """Interleave the two commands, then print medians, spreads and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--noise", type=float, default=0.10,
                        help="leave out runs where other processes used more than this share")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        env = prepare(data_dir)
        ours = [sys.executable, "-m", "flask", "--app", "app", "create-key", "bench@example.com"]
        bare = [sys.executable, "-m", "flask", "--app", "bench/baselines/bare_app.py", "ping"]
        for command in (ours, bare):  # warm the file cache once, not counted
            timed(command, env)
        pairs, noisy = [], 0
        for _ in range(args.rounds):
            (a, a_noise), (b, b_noise) = timed(ours, env), timed(bare, env)
            print(f"  create-key {a * 1000:6.0f} ms (others {a_noise:5.1%})   "
                  f"bare {b * 1000:6.0f} ms (others {b_noise:5.1%})")
            if max(a_noise, b_noise) > args.noise:
                noisy += 1
                continue
            pairs.append((a, b))
    if not pairs:
        sys.exit("every round was noisy; run again on a quieter machine")
    print(summary("flask --app app create-key", [a for a, _ in pairs]))
    print(summary("bare Flask CLI command     ", [b for _, b in pairs]))
    print(f"ratio ours/bare: median of pairs {statistics.median(a / b for a, b in pairs):.2f}"
          f"  ({noisy} noisy round(s) left out)")


if __name__ == "__main__":
    main()
