"""The operations settings: parsed and checked at start-up like every other."""
from __future__ import annotations

import pytest

from runbase_web.config import ConfigError, load_settings


def settings(tmp_path, **env):
    return load_settings(env={"RUNBASE_DATA_DIR": str(tmp_path), **env})


def test_defaults(tmp_path):
    loaded = settings(tmp_path)
    assert loaded["SHUTDOWN_GRACE_SECONDS"] == 30
    assert loaded["METRICS_TOKEN"] is None and loaded["WORKER_METRICS_ADDRESS"] is None
    assert loaded["LOG_FORMAT"] == "text"


def test_values(tmp_path):
    loaded = settings(tmp_path, RUNBASE_SHUTDOWN_GRACE_SECONDS="0", RUNBASE_LOG_FORMAT="JSON",
                      RUNBASE_METRICS_TOKEN="t", RUNBASE_WORKER_METRICS_ADDRESS="[::1]:9101")
    assert loaded["SHUTDOWN_GRACE_SECONDS"] == 0 and loaded["LOG_FORMAT"] == "json"
    assert loaded["METRICS_TOKEN"] == "t" and loaded["WORKER_METRICS_ADDRESS"] == ("::1", 9101)


@pytest.mark.parametrize("name, value", [
    ("RUNBASE_SHUTDOWN_GRACE_SECONDS", "-1"), ("RUNBASE_SHUTDOWN_GRACE_SECONDS", "soon"),
    ("RUNBASE_LOG_FORMAT", "xml"), ("RUNBASE_WORKER_METRICS_ADDRESS", "9101"),
    ("RUNBASE_WORKER_METRICS_ADDRESS", "host:99999")])
def test_bad_values_fail_at_start_up(tmp_path, name, value):
    with pytest.raises(ConfigError, match=name):
        settings(tmp_path, **{name: value})
