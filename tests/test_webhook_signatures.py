"""The signature checks providers' callbacks go through (runbase_web/webhook_signatures.py),
against signatures made by independent code: the `standardwebhooks` reference package and
`cryptography`'s Ed25519."""
from __future__ import annotations

import base64
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from runbase_web.webhook_signatures import (KeyCache, SignatureError, bad_signature,
                                            check_timestamp, ed25519_keys, standard_key,
                                            verify_ed25519, verify_standard)
from tests.fakes.replicate import WEBHOOK_SECRET, standard_webhook_headers


def lowered(headers: dict) -> dict:
    """Headers with lower-case names, as the checks take them."""
    return {name.lower(): value for name, value in headers.items()}


@pytest.mark.parametrize("skew, ok", [(0, True), (300, True), (-300, True), (301, False),
                                      (-301, False)])
def test_timestamps_within_five_minutes_either_way(skew, ok):
    now = 1_800_000_000
    if ok:
        assert check_timestamp(str(now + skew), now=now) == now + skew
    else:
        with pytest.raises(SignatureError) as refused:
            check_timestamp(str(now + skew), now=now)
        assert (refused.value.code, refused.value.status) == ("stale", 400)


@pytest.mark.parametrize("value", ["", "1.5", "-1", "1e9", " 1", "9" * 13])
def test_timestamps_are_whole_seconds(value):
    with pytest.raises(SignatureError):
        check_timestamp(value, now=time.time())


def test_standard_webhooks_signatures_of_the_reference_package_verify():
    body = '{"id": "p1"}'
    headers = lowered(standard_webhook_headers(WEBHOOK_SECRET, body, message_id="msg_1"))
    assert verify_standard(WEBHOOK_SECRET, headers, body.encode(), now=time.time()) == "msg_1"
    with pytest.raises(SignatureError) as refused:
        verify_standard(WEBHOOK_SECRET, headers, b'{"id": "p2"}', now=time.time())
    assert refused.value.status == 401
    # The key is the decoded secret, not its text: the secret's text as a key fails.
    text_key = "whsec_" + base64.b64encode(WEBHOOK_SECRET.encode()).decode()
    with pytest.raises(SignatureError):
        verify_standard(text_key, headers, body.encode(), now=time.time())


def test_malformed_secrets_and_signature_entries():
    with pytest.raises(ValueError):
        standard_key("whsec_not base64!")
    with pytest.raises(ValueError):
        standard_key("whsec_")
    body = b"{}"
    headers = lowered(standard_webhook_headers(WEBHOOK_SECRET, "{}"))
    headers["webhook-signature"] = "v1,***not-base64*** " + headers["webhook-signature"]
    assert verify_standard(WEBHOOK_SECRET, headers, body, now=time.time())


def jwk(key: Ed25519PrivateKey) -> dict:
    """The public JSON Web Key of `key`."""
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode()}


def test_ed25519_against_every_key_of_a_key_set():
    signer, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    keys = ed25519_keys({"keys": [jwk(other), {"kty": "EC", "crv": "P-256", "x": "AA"},
                                  {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}, jwk(signer)]})
    assert len(keys) == 2  # the EC key and the 3-byte "key" are skipped
    verify_ed25519(keys, signer.sign(b"message").hex(), b"message")
    for signature in (signer.sign(b"other").hex(), "zz", "", "abc"):
        with pytest.raises(SignatureError) as refused:
            verify_ed25519(keys, signature, b"message")
        assert refused.value.code == "bad_signature"


@pytest.mark.parametrize("document", [{}, {"keys": []}, [], {"keys": [{"kty": "RSA"}]}])
def test_a_key_set_without_ed25519_keys_is_unavailable(document):
    with pytest.raises(SignatureError) as refused:
        ed25519_keys(document)
    assert (refused.value.code, refused.value.status) == ("keys_unavailable", 503)


def test_key_cache_refetches_only_after_a_failure_past_the_refetch_time():
    fetched = []

    def fetch():
        fetched.append(len(fetched))
        return len(fetched)

    def needs(expected):
        def check(keys):
            if keys != expected:
                raise bad_signature()
            return keys
        return check

    cache = KeyCache(max_age=3600, refetch_after=3600)
    assert cache.verified("k", fetch, needs(1)) == 1
    assert cache.verified("k", fetch, needs(1)) == 1 and len(fetched) == 1
    with pytest.raises(SignatureError):
        cache.verified("k", fetch, needs(2))  # fetched moments ago: no refetch
    assert len(fetched) == 1
    cache.refetch_after = 0
    assert cache.verified("k", fetch, needs(2)) == 2 and len(fetched) == 2
    assert cache.verified("other", fetch, needs(3)) == 3  # per cache key
