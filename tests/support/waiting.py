"""Waiting in tests for something another thread or process does."""
from __future__ import annotations

import time
from typing import Callable


def wait_for(condition: Callable[[], object], timeout: float = 10.0,
             step: float = 0.02) -> bool:
    """Call `condition` until it is true or `timeout` seconds have passed; its last
    answer, as a bool."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(step)
    return bool(condition())
