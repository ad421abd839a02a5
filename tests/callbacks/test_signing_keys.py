"""Where each provider's callback keys come from: Replicate's secret from its API, fal's
public keys from its key set, both cached and fetched again when they may have rotated;
and an upstream Runbase's webhooks as this very server sends them."""
from __future__ import annotations

import json
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from runbase_web.providers import replicate
from runbase_web.providers.fal import FalAdapter
from runbase_web.providers.replicate import ReplicateAdapter
from runbase_web.providers.upstream import UpstreamRunbaseAdapter
from runbase_web.services import webhooks
from runbase_web.webhook_signatures import SignatureError
from tests.fakes import fal as fake_fal
from tests.fakes import replicate as fake_replicate
from tests.fakes.replicate import standard_webhook_headers
from tests.providers.support import start_fake, stop_soon

NEW_SECRET = "whsec_Q0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0M="


@pytest.fixture
def fake_replicate_api():
    """A fake Replicate API; yields its state and the variables pointing at it."""
    state, server = start_fake(fake_replicate.make_app)
    yield state, {"REPLICATE_API_TOKEN": "r8-test", "REPLICATE_BASE_URL": server.url}
    stop_soon(server)


@pytest.fixture
def fake_fal_api():
    """A fake fal with its key set; yields its state and the variables pointing at it."""
    state, server = start_fake(fake_fal.make_app)
    yield state, {"FAL_KEY": "fal-test", "FAL_WEBHOOK_JWKS_URL": f"{server.url}/.well-known/jwks.json"}
    stop_soon(server)


def prediction_callback(secret: str, prediction_id: str = "p1") -> tuple[dict, bytes]:
    """A signed Replicate callback: (lower-cased headers, body)."""
    body = json.dumps({"id": prediction_id, "status": "succeeded", "output": ["https://x/y.png"]})
    headers = standard_webhook_headers(secret, body)
    return {name.lower(): value for name, value in headers.items()}, body.encode()


def secret_gets(state) -> int:
    """How often the signing secret was fetched."""
    return len(state.calls_to("GET", "/v1/webhooks/default/secret"))


def test_replicate_secret_is_fetched_once_and_again_after_a_rotation(fake_replicate_api,
                                                                    monkeypatch):
    state, env = fake_replicate_api
    for prediction_id in ("p1", "p2"):
        headers, body = prediction_callback(fake_replicate.WEBHOOK_SECRET, prediction_id)
        callback = ReplicateAdapter.verify_callback(env, headers, body, time.time())
        assert (callback.upstream_id, callback.message_id) == (prediction_id, headers["webhook-id"])
    assert secret_gets(state) == 1
    # Replicate rotated the secret: soon after a fetch, a failing check is just refused ...
    state.data["webhook_secret"] = NEW_SECRET
    headers, body = prediction_callback(NEW_SECRET)
    with pytest.raises(SignatureError) as refused:
        ReplicateAdapter.verify_callback(env, headers, body, time.time())
    assert refused.value.status == 401 and secret_gets(state) == 1
    # ... later, it fetches the secret again and checks once more.
    monkeypatch.setattr(replicate.SECRET_CACHE, "refetch_after", 0.0)
    assert ReplicateAdapter.verify_callback(env, headers, body, time.time()).upstream_id == "p1"
    assert secret_gets(state) == 2


def test_replicate_secret_out_of_reach_is_a_503_so_replicate_retries(fake_replicate_api):
    state, env = fake_replicate_api
    state.script["secret"].append({"status": 500, "json": {"detail": "oops"}})
    headers, body = prediction_callback(fake_replicate.WEBHOOK_SECRET)
    with pytest.raises(SignatureError) as refused:
        ReplicateAdapter.verify_callback(env, headers, body, time.time())
    assert (refused.value.status, refused.value.code) == (503, "keys_unavailable")
    # Nothing was cached: the next callback fetches it and passes.
    assert ReplicateAdapter.verify_callback(env, headers, body, time.time()).upstream_id == "p1"


def fal_callback(state, key=None, request_id: str = "req-1") -> tuple[dict, bytes]:
    """A fal callback signed with `key` (default: the published one): (headers, body)."""
    body = json.dumps({"request_id": request_id, "status": "OK", "payload": {"images": []}}).encode()
    headers = fake_fal.fal_headers(key or fake_fal.signing_key(state), request_id, body)
    return {name.lower(): value for name, value in headers.items()}, body


def jwks_gets(state) -> int:
    """How often the key set was fetched."""
    return len(state.calls_to("GET", "/.well-known/jwks.json"))


def test_fal_keys_are_fetched_once_and_checked_against_each_published_key(fake_fal_api):
    state, env = fake_fal_api
    for request_id in ("req-1", "req-2"):
        headers, body = fal_callback(state, request_id=request_id)
        callback = FalAdapter.verify_callback(env, headers, body, time.time())
        assert callback.upstream_id == request_id
        assert callback.message_id.startswith(
            f"{request_id}:{headers['x-fal-webhook-timestamp']}:")
    assert jwks_gets(state) == 1
    headers, body = fal_callback(state, key=Ed25519PrivateKey.generate())
    with pytest.raises(SignatureError) as refused:
        FalAdapter.verify_callback(env, headers, body, time.time())
    assert refused.value.status == 401 and jwks_gets(state) == 1


def test_fal_keys_out_of_reach_are_a_503(fake_fal_api):
    state, env = fake_fal_api
    env = {**env, "FAL_WEBHOOK_JWKS_URL": env["FAL_WEBHOOK_JWKS_URL"].replace("jwks", "nothing")}
    headers, body = fal_callback(state)
    with pytest.raises(SignatureError) as refused:
        FalAdapter.verify_callback(env, headers, body, time.time())
    assert (refused.value.status, refused.value.code) == (503, "keys_unavailable")


def test_fal_body_about_another_request_than_its_headers_is_refused(fake_fal_api):
    state, env = fake_fal_api
    body = json.dumps({"request_id": "req-2", "status": "OK", "payload": {}}).encode()
    headers = fake_fal.fal_headers(fake_fal.signing_key(state), "req-1", body)
    with pytest.raises(SignatureError) as refused:
        FalAdapter.verify_callback(env, {k.lower(): v for k, v in headers.items()}, body,
                                   time.time())
    assert refused.value.code == "bad_body"


def test_this_servers_own_webhooks_pass_as_an_upstream_runbase():
    # An upstream Runbase is this code: what webhooks.py signs, verify_callback accepts.
    secret = webhooks.new_secret()
    body = json.dumps({"id": "run_up", "status": "succeeded", "output": {"urls": ["/files/a.png"]}},
                      sort_keys=True, separators=(",", ":")).encode()
    headers = webhooks.signed_headers(secret, webhooks.new_message_id(), int(time.time()), body)
    callback = UpstreamRunbaseAdapter.verify_callback(
        {"RUNBASE_UPSTREAM_WEBHOOK_SECRET": secret}, {k.lower(): v for k, v in headers.items()},
        body, time.time())
    assert callback.upstream_id == "run_up" and callback.message_id == headers["webhook-id"]
