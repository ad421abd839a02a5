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


def _allowed_times(limiter: KeyRateLimiter, count: int, seconds: int, duration: float) -> list[float]:
    allowed, end = [], time.monotonic() + duration
    while time.monotonic() < end:
        if limiter.hit(7, count, seconds).allowed:
            allowed.append(time.monotonic())
        time.sleep(0.002)
    return allowed


def _most_in_any_span(times: list[float], span: float) -> int:
    return max(sum(1 for t in times if start <= t < start + span) for start in times)


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
    # 3.2 s of steady traffic crosses at least three aligned 1-second edges; a fixed window
    # lets 2 × 5 through around each edge.
    allowed = _allowed_times(limiter, 5, 1, 3.2)
    assert len(allowed) >= 12  # the limit still lets traffic through as the window moves
    # 10 ms of slack for the gap between the limiter's clock and ours.
    assert _most_in_any_span(allowed, 0.99) <= 5


