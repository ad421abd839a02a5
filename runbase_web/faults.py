"""Named fault points for crash tests (a worker killed at a chosen step).

A test starts a worker with RUNBASE_FAULT_HANG=<point> and kills it with SIGKILL
while it is parked there. Unset (always, in production), a point costs one
dictionary look-up.
"""
from __future__ import annotations

import os
import time


def point(name: str) -> None:
    """Park this thread forever if the environment names this fault point."""
    if name in os.environ.get("RUNBASE_FAULT_HANG", "").split(","):
        while True:
            time.sleep(3600)
