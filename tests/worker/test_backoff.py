"""How long the worker waits before trying a provider again (worker/execute.backoff_seconds),
and which failures count as attempts."""
from __future__ import annotations

import pytest

from runbase_web.providers.base import ProviderError
from runbase_web.worker import execute
from runbase_web.worker.execute import backoff_seconds, created_nothing

SAMPLES = 500


def waits(failures: int, retry_after: float | None, **kwargs) -> list[float]:
    """Many draws, so the jitter's whole range shows."""
    return [backoff_seconds(failures, retry_after, **kwargs) for _ in range(SAMPLES)]


def test_retry_after_zero_waits_at_least_a_second():
    # An upstream Runbase answers 429 with Retry-After: 0; asking again at once only
    # collects more 429s.
    drawn = waits(1, 0.0)
    assert min(drawn) >= 1.0 and max(drawn) <= 1.5
    assert max(drawn) - min(drawn) > 0.1  # jittered, so throttled runs do not return together


@pytest.mark.parametrize("hint, low, high", [
    (0.4, 1.0, 1.5),     # below the floor: the floor, plus up to half of it
    (2.0, 2.0, 3.0),     # the hint, plus up to half of it
    (30.0, 30.0, 35.0),  # jitter is at most 5 s, so long hints are not stretched much
    (90.0, 60.0, 60.0),  # never longer than the cap
])
def test_a_hint_is_honoured_with_bounded_jitter(hint, low, high):
    drawn = waits(1, hint)
    assert low <= min(drawn) and max(drawn) <= high


def test_without_a_hint_the_wait_doubles_with_jitter_up_to_the_cap():
    for failures in range(1, 7):
        step = 2 ** (failures - 1)
        drawn = waits(failures, None)
        assert 0.5 * step <= min(drawn) and max(drawn) <= min(1.5 * step, 60.0)
    assert max(waits(40, None)) <= execute.MAX_BACKOFF_SECONDS


def test_poll_waits_have_their_own_cap():
    assert max(waits(12, None, cap=execute.MAX_POLL_BACKOFF_SECONDS)) <= 30.0
    assert min(waits(12, None, cap=execute.MAX_POLL_BACKOFF_SECONDS)) == 30.0


def test_the_floor_and_the_steps_are_settings(monkeypatch):
    monkeypatch.setattr(execute, "MIN_HINTED_WAIT_SECONDS", 0.2)
    monkeypatch.setattr(execute, "BASE_BACKOFF_SECONDS", 0.1)
    monkeypatch.setattr(execute, "jitter", lambda low, high: high)
    assert backoff_seconds(1, 0.0) == pytest.approx(0.3)
    assert backoff_seconds(3, None) == pytest.approx(0.6)


@pytest.mark.parametrize("error, expected", [
    (ProviderError("429", code="provider_busy", retryable=True), True),
    (ProviderError("per-day quota", code="provider_busy"), False),  # final: the run fails
    (ProviderError("503", code="provider_error", retryable=True), False),
    (ProviderError("timeout", code="provider_timeout", retryable=True), False),  # may have run
])
def test_only_throttles_are_free_attempts(error, expected):
    assert created_nothing(error) is expected
