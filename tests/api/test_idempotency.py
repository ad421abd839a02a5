"""Idempotency-Key on POST /api/v1/runs: same key and body, one run and one charge."""
from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests
from sqlalchemy import func, select

from runbase_web.extensions import db
from runbase_web.models import LedgerEntry, Run, User

BODY = {"model": "local/sketch", "input": {"prompt": "same request"}}


def test_m1_concurrent_identical_requests_make_one_run(app, http_server, user, auth):
    headers = dict(auth, **{"Idempotency-Key": "order-42"})
    barrier = threading.Barrier(50)

    def send(_):
        barrier.wait()
        response = requests.post(f"{http_server}/api/v1/runs", json=BODY, headers=headers, timeout=120)
        return response.status_code, response.json()["id"]
    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(send, range(50)))

    assert Counter(status for status, _ in results) == {201: 50}
    assert len({run_id for _, run_id in results}) == 1
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Run)) == 1
        assert db.session.scalar(select(func.count()).select_from(LedgerEntry)
                                 .where(LedgerEntry.kind == "charge")) == 1
        assert db.session.get(User, user.id).balance_micros == 1_000_000 - 1000


def test_m2_same_key_different_body_is_refused(client, auth):
    headers = dict(auth, **{"Idempotency-Key": "order-43"})
    first = client.post("/api/v1/runs", json=BODY, headers=headers)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    again = client.post("/api/v1/runs", json=BODY, headers=headers)
    assert again.status_code == 201 and again.get_json()["id"] == first.get_json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    other = dict(BODY, input={"prompt": "different"})
    response = client.post("/api/v1/runs", json=other, headers=headers)
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "idempotency_key_reused"


def test_keys_are_per_account_and_bounded(client, auth, make_user, make_key):
    headers = dict(auth, **{"Idempotency-Key": "shared-name"})
    mine = client.post("/api/v1/runs", json=BODY, headers=headers).get_json()["id"]
    theirs_headers = {"Authorization": f"Bearer {make_key(make_user())}", "Idempotency-Key": "shared-name"}
    theirs = client.post("/api/v1/runs", json=BODY, headers=theirs_headers).get_json()["id"]
    assert mine != theirs
    too_long = dict(auth, **{"Idempotency-Key": "k" * 256})
    assert client.post("/api/v1/runs", json=BODY, headers=too_long).status_code == 400


def test_refused_create_leaves_the_key_unused(client, make_user, make_key):
    poor = make_user(credit_micros=0)
    headers = {"Authorization": f"Bearer {make_key(poor)}", "Idempotency-Key": "retry-me"}
    assert client.post("/api/v1/runs", json=BODY, headers=headers).status_code == 402
    assert client.post("/api/v1/runs", json=BODY, headers=headers).status_code == 402


def test_keys_are_counted_in_characters_not_bytes(client, auth):
    # A WSGI server hands header bytes over as Latin-1 text: this is how 200 "é" sent as
    # UTF-8 arrive. 200 characters are within the 255 the document allows; 256 are not.
    def wire(text: str) -> str:
        return text.encode("utf-8").decode("latin-1")

    headers = dict(auth, **{"Idempotency-Key": wire("é" * 200)})
    first = client.post("/api/v1/runs", json=BODY, headers=headers)
    assert first.status_code == 201, first.text
    again = client.post("/api/v1/runs", json=BODY, headers=headers)
    assert again.get_json()["id"] == first.get_json()["id"]
    for key in (wire("é" * 256), "", "   "):
        refused = client.post("/api/v1/runs", json=BODY, headers=dict(auth, **{"Idempotency-Key": key}))
        assert refused.status_code == 400, repr(key)
        assert refused.get_json()["error"]["code"] == "invalid_idempotency_key"
    # Bytes that are not UTF-8 are kept as they came: one character each.
    latin = client.post("/api/v1/runs", json=BODY, headers=dict(auth, **{"Idempotency-Key": "\xe9" * 255}))
    assert latin.status_code == 201
