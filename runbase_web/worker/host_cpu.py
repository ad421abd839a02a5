"""How much CPU this machine has to spare, for a worker deciding whether to help.

Read from /proc/stat (Linux): the idle share of every core since the previous reading,
taken at most once per READ_SECONDS. Elsewhere, and when the file cannot be read, the
answer is None ("unknown") and callers act as if there were CPU to spare. In a container
with a CPU quota, /proc/stat describes the host, so a throttled worker may see spare
CPU that it cannot use: it then behaves as it would without this reading.
"""
from __future__ import annotations

import os
import threading
import time

#: Readings closer together than this reuse the last answer (a reading is ~20 µs).
READ_SECONDS = 0.5
_STAT = "/proc/stat"


def _ticks() -> tuple[int, int] | None:
    """(idle, total) clock ticks of all cores so far, or None when unreadable."""
    try:
        with open(_STAT, "rb") as stat:
            fields = stat.readline().split()[1:]
    except OSError:
        return None
    if len(fields) < 5:
        return None
    values = [int(value) for value in fields[:8]]
    idle = values[3] + values[4]  # idle + iowait: time no process wanted a core
    return idle, sum(values)


class HostCpu:
    """The machine's idle cores over the last READ_SECONDS or so (None: unknown)."""

    def __init__(self, cores: int | None = None):
        self.cores = cores or os.cpu_count() or 1
        self._lock = threading.Lock()
        self._last: tuple[int, int] | None = None
        self._read_at = float("-inf")
        self._idle_cores: float | None = None

    def idle_cores(self) -> float | None:
        """Cores' worth of CPU that stood idle between the last two readings."""
        now = time.monotonic()
        with self._lock:
            if now - self._read_at >= READ_SECONDS:
                ticks = _ticks()
                if ticks is not None and self._last is not None and ticks[1] > self._last[1]:
                    idle, total = ticks[0] - self._last[0], ticks[1] - self._last[1]
                    self._idle_cores = self.cores * idle / total
                self._last, self._read_at = ticks, now
            return self._idle_cores
