"""Time per API request inside one process (Flask's test client, one thread, SQLite):
GET /api/v1/runs/:id and POST /api/v1/runs, against a bare Flask JSON endpoint
(bench/baselines/bare_app.py) measured in the same run. Rounds interleave the three.

    python bench/request_cpu.py --rounds 5 --requests 300

The per-key rate limit is on (with a budget no run reaches), so its cost is counted.
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runbase_web import create_app  # noqa: E402
from runbase_web.cli import upgrade_database  # noqa: E402
from runbase_web.extensions import db  # noqa: E402
from runbase_web.services import accounts, keys  # noqa: E402

SKETCH = {"model": "local/sketch", "input": {"prompt": "a lighthouse"}}


def bare_client():
    """The baseline app's test client."""
    spec = importlib.util.spec_from_file_location("bare_app", ROOT / "bench/baselines/bare_app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app.test_client()


def runbase_client():
    """Our app on a fresh SQLite database, with one funded key; (client, headers)."""
    data = tempfile.mkdtemp(prefix="runbase-bench-")
    app = create_app({"DATA_DIR": data, "DATABASE_URL": f"sqlite:///{data}/bench.db",
                      "EMBEDDED_WORKER": False, "RATE_LIMIT": (10 ** 9, 10)})
    upgrade_database(app)
    with app.app_context():
        user = accounts.create_user(db.session, "bench@example.com", "benchmark-pass",
                                    credit_micros=10 ** 12)
        _key, full_key = keys.create_key(db.session, user.id, "bench")
        db.session.commit()
    return app.test_client(), {"Authorization": f"Bearer {full_key}"}


def per_request_ms(send, requests: int) -> float:
    """Milliseconds per call of `send`, over `requests` calls."""
    started = time.perf_counter()
    for _ in range(requests):
        send()
    return (time.perf_counter() - started) * 1000 / requests


def main() -> None:
    """Interleave bare, GET and create; print medians, spreads and ratios to bare."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    bare = bare_client()
    client, headers = runbase_client()
    run_id = client.post("/api/v1/runs", json=SKETCH, headers=headers).get_json()["id"]
    paths = {
        "bare Flask JSON": lambda: bare.get("/json"),
        "GET /api/v1/runs/:id": lambda: client.get(f"/api/v1/runs/{run_id}", headers=headers),
        "POST /api/v1/runs": lambda: client.post("/api/v1/runs", json=SKETCH, headers=headers),
    }
    for send in paths.values():  # warm caches, not counted
        per_request_ms(send, 20)
    samples = {name: [] for name in paths}
    for _ in range(args.rounds):
        for name, send in paths.items():
            samples[name].append(per_request_ms(send, args.requests))
    base = statistics.median(samples["bare Flask JSON"])
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"{name:<22} median {median:6.2f} ms/request (min {min(values):.2f}, "
              f"max {max(values):.2f})   {median / base:5.1f} x bare")


if __name__ == "__main__":
    main()
