"""Fixtures for the webhook tests: loopback receivers are allowed, and output URLs are
absolute (RUNBASE_PUBLIC_URL), as a deployment serving webhooks would have them."""
from __future__ import annotations

import pytest

from tests.webhooks import Receiver, account_secret

PUBLIC_URL = "http://runbase.test"


@pytest.fixture
def app_config():
    """The guarded fetcher may reach 127.0.0.1 (our receiver) and nothing else inside."""
    return {"FETCH_ALLOW_LOOPBACK": True, "PUBLIC_URL": PUBLIC_URL}


@pytest.fixture
def receiver(app, user):
    """A verifying receiver for `user`'s deliveries."""
    running = Receiver(secret=account_secret(app, user.id)).start()
    yield running
    running.stop()


@pytest.fixture
def create_run(client, auth):
    """Create a run through the API with a webhook; returns the run object."""
    def create(webhook: str, model: str = "local/test", **input_):
        input_.setdefault("prompt", "webhook test")
        response = client.post("/api/v1/runs", headers=auth,
                               json={"model": model, "input": input_, "webhook": webhook})
        assert response.status_code == 201, response.get_json()
        return response.get_json()
    return create
