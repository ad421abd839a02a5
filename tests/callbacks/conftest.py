"""Fixtures for the callback endpoint tests: an upstream Runbase configured with a webhook
secret (its checks need no network), and no worker, so runs stay where a test puts them."""
from __future__ import annotations

import pytest

from runbase_web.providers import fal, replicate
from tests.fakes.replicate import WEBHOOK_SECRET

UPSTREAM_ENV = {"RUNBASE_UPSTREAM_URL": "https://upstream.invalid", "RUNBASE_UPSTREAM_KEY": "sk-up",
                "RUNBASE_UPSTREAM_WEBHOOK_SECRET": WEBHOOK_SECRET}


@pytest.fixture
def app_config():
    """The upstream Runbase with its webhook secret; gpt-image-2 is routed to it."""
    return {"PROVIDER_ENV": dict(UPSTREAM_ENV), "PUBLIC_URL": "https://runbase.example"}


@pytest.fixture(autouse=True)
def _fresh_signing_keys():
    """No test checks a callback with keys another test's fake published."""
    replicate.SECRET_CACHE.clear()
    fal.JWKS_CACHE.clear()
    yield
    replicate.SECRET_CACHE.clear()
    fal.JWKS_CACHE.clear()
