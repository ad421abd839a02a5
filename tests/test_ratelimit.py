"""The moving-window limiter itself, in process memory and in a real Redis: no span of the
window's length ever holds more than the limit, and Retry-After is rounded up."""
from __future__ import annotations

import time

import pytest

from runbase_web.ratelimit import KeyRateLimiter, seconds_to_wait
from tests.support.redis_server import RedisServer, redis_available


@pytest.mark.parametrize("reset_at, now, expected", [
    (100.39, 91.0, 10), (100.9, 91.5, 10), (100.0, 91.0, 9), (100.0, 99.999, 1), (100.0, 100.5, 1),
])
def test_retry_after_is_rounded_up(reset_at, now, expected):
    assert seconds_to_wait(reset_at, now) == expected


def _allowed_stamps(limiter: KeyRateLimiter, count: int, seconds: int) -> list[tuple[float, float]]:
    """Hit the limiter the way that breaks a fixed window: one request, a burst just before
    the window's end, another burst just after it. Returns (before, after) wall-clock times
    around each allowed hit: the limiter stamped it somewhere in between, however long
    this process was descheduled."""
    allowed, start = [], time.time()

    def burst(at: float, hits: int) -> None:
        time.sleep(max(0.0, start + at - time.time()))
        for _ in range(hits):
            before = time.time()
            if limiter.hit(7, count, seconds).allowed:
                allowed.append((before, time.time()))

    burst(0.0, 1)
    burst(0.85 * seconds, 2 * count)
    burst(1.10 * seconds, 2 * count)
    burst(2.20 * seconds, 2 * count)
    return allowed


def _shortest_span_of(stamps: list[tuple[float, float]], count: int) -> float:
    """The longest possible time between allowed request i and allowed request i + count,
    minimised over i: a moving window keeps it at or above the window's length."""
    return min(stamps[i + count][1] - stamps[i][0] for i in range(len(stamps) - count))


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_limit_holds_over_any_span_not_only_aligned_windows(backend, request):
    if backend == "redis":
        if not redis_available():
            pytest.skip("redis-server is not installed")
        server = RedisServer().start()
        request.addfinalizer(server.stop)
        limiter = KeyRateLimiter(server.url)
    else:
        limiter = KeyRateLimiter("memory://")
    # A fixed window lets the burst before its end and the one after its start through
    # together: 9 requests within a quarter of a second.
    allowed = _allowed_stamps(limiter, 5, 1)
    assert len(allowed) >= 6  # the window moves on: later requests get in again
    assert _shortest_span_of(allowed, 5) >= 1.0


