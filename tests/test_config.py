"""Settings: parsing, defaults and start-up validation."""
from __future__ import annotations

import pytest

from runbase_web.config import ConfigError, load_settings


def settings(tmp_path, **env):
    return load_settings(env={"RUNBASE_DATA_DIR": str(tmp_path), **env})


def test_defaults(tmp_path):
    loaded = settings(tmp_path)
    assert loaded["DATABASE_URL"] == f"sqlite:///{tmp_path / 'runbase.db'}"
    assert loaded["SIGNUP_CREDIT_MICROS"] == 1_000_000 and loaded["LEASE_SECONDS"] == 30
    assert loaded["EMBEDDED_WORKER"] is True and loaded["RATE_LIMIT"] == (20, 10)
    assert loaded["CALLBACK_POLL_SECONDS"] == 60.0 and loaded["PROVIDER_CALLBACKS"] is True
    assert len(loaded["SECRET_KEY"]) > 40
    assert settings(tmp_path)["SECRET_KEY"] == loaded["SECRET_KEY"]  # kept across restarts


def test_values_from_env(tmp_path):
    loaded = settings(tmp_path, RUNBASE_SIGNUP_CREDIT_USD="2.345678", RUNBASE_EMBEDDED_WORKER="0",
                      RUNBASE_RATE_LIMIT="off", OPENAI_API_KEY="k", RUNBASE_PUBLIC_URL="https://x.example/",
                      RUNBASE_CALLBACK_POLL_SECONDS="120", RUNBASE_UPSTREAM_WEBHOOK_SECRET="whsec_x",
                      FAL_WEBHOOK_JWKS_URL="https://keys.example/jwks.json")
    assert loaded["SIGNUP_CREDIT_MICROS"] == 2_345_678 and loaded["EMBEDDED_WORKER"] is False
    assert loaded["RATE_LIMIT"] is None and loaded["PROVIDER_ENV"] == {
        "OPENAI_API_KEY": "k", "RUNBASE_UPSTREAM_WEBHOOK_SECRET": "whsec_x",
        "FAL_WEBHOOK_JWKS_URL": "https://keys.example/jwks.json"}
    assert loaded["PUBLIC_URL"] == "https://x.example" and loaded["CALLBACK_POLL_SECONDS"] == 120.0


@pytest.mark.parametrize("name, value", [
    ("RUNBASE_SIGNUP_CREDIT_USD", "lots"), ("RUNBASE_SIGNUP_CREDIT_USD", "0.0000001"),
    ("RUNBASE_EMBEDDED_WORKER", "maybe"), ("RUNBASE_LEASE_SECONDS", "1"),
    ("RUNBASE_RATE_LIMIT", "20 per minute"), ("RUNBASE_DATABASE_URL", "mysql://x"),
    ("RUNBASE_PUBLIC_URL", "runbase.example"), ("RUNBASE_CALLBACK_POLL_SECONDS", "0"),
    ("RUNBASE_CALLBACK_POLL_SECONDS", "a minute"), ("RUNBASE_CALLBACK_POLL_SECONDS", "nan"),
    ("RUNBASE_PROVIDER_CALLBACKS", "sometimes"),
])
def test_bad_values_fail_at_start(tmp_path, name, value):
    with pytest.raises(ConfigError, match=name):
        settings(tmp_path, **{name: value})
