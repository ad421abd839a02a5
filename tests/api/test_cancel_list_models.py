"""API extensions: cancel, list with cursors, the models catalog."""
from __future__ import annotations

import threading
import time

from sqlalchemy import select

from runbase_web.extensions import db
from runbase_web.models import LedgerEntry, User
from tests.conftest import wait_for_run


def create(client, auth, **input_):
    body = {"model": "local/test", "input": {"prompt": "x", **input_}}
    return client.post("/api/v1/runs", json=body, headers=auth).get_json()


def test_cancel_pending_run_refunds_once(app, client, auth, user):
    run = create(client, auth)
    canceled = client.post(f"/api/v1/runs/{run['id']}/cancel", headers=auth).get_json()
    assert canceled["status"] == "failed" and canceled["errorCode"] == "canceled"
    again = client.post(f"/api/v1/runs/{run['id']}/cancel", headers=auth).get_json()
    assert again == canceled
    with app.app_context():
        kinds = [e.kind for e in db.session.scalars(select(LedgerEntry).where(LedgerEntry.run_id == run["id"]))]
        assert sorted(kinds) == ["charge", "refund"]
        assert db.session.get(User, user.id).balance_micros == 1_000_000


def test_cancel_processing_run_and_the_worker_loses_the_race(app, client, auth, worker):
    # The delay leaves room for the cancel to land first even on a slow, busy machine.
    delay_ms = 2000
    run = create(client, auth, delay_ms=delay_ms)
    wait_for_run(app, run["id"], until=("processing",))
    assert client.post(f"/api/v1/runs/{run['id']}/cancel", headers=auth).get_json()["errorCode"] == "canceled"
    time.sleep(delay_ms / 1000 + 0.4)  # the delayed job comes due; the worker must not resurrect the run
    final = client.get(f"/api/v1/runs/{run['id']}", headers=auth).get_json()
    assert final["status"] == "failed" and final["errorCode"] == "canceled" and final["output"] is None


def test_cancel_a_finished_run_returns_it_unchanged(app, client, auth, worker):
    run = create(client, auth)
    wait_for_run(app, run["id"])
    body = client.post(f"/api/v1/runs/{run['id']}/cancel", headers=auth).get_json()
    assert body["status"] == "succeeded"


def test_cancel_races_completion_one_outcome(app, client, auth, worker):
    runs = [create(client, auth) for _ in range(10)]
    threads = [threading.Thread(target=client.post, args=(f"/api/v1/runs/{r['id']}/cancel",),
                                kwargs={"headers": auth}) for r in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for run in runs:
        assert wait_for_run(app, run["id"]).status in ("succeeded", "failed")


def test_cancel_other_accounts_run_is_not_found(client, auth, make_user, make_key):
    run = create(client, auth)
    stranger = {"Authorization": f"Bearer {make_key(make_user())}"}
    assert client.post(f"/api/v1/runs/{run['id']}/cancel", headers=stranger).status_code == 404


def test_list_runs_pages_newest_first_with_filters(client, auth, make_user, make_key):
    ids = [create(client, auth)["id"] for _ in range(5)]
    client.post("/api/v1/runs", json={"model": "local/sketch", "input": {"prompt": "y"}}, headers=auth)
    create(client, {"Authorization": f"Bearer {make_key(make_user())}"})  # someone else's
    first = client.get("/api/v1/runs?limit=2&model=local/test", headers=auth).get_json()
    assert [r["id"] for r in first["data"]] == ids[::-1][:2] and first["hasMore"]
    second = client.get(f"/api/v1/runs?limit=10&model=local/test&after={first['nextCursor']}", headers=auth).get_json()
    assert [r["id"] for r in second["data"]] == ids[::-1][2:] and not second["hasMore"]
    assert second["nextCursor"] is None
    everything = client.get("/api/v1/runs", headers=auth).get_json()["data"]
    assert len(everything) == 6 and everything[0]["model"] == "local/sketch"
    assert client.get("/api/v1/runs?status=pending", headers=auth).get_json()["data"]
    assert client.get("/api/v1/runs?limit=0", headers=auth).status_code == 400
    assert client.get("/api/v1/runs?status=done", headers=auth).get_json()["error"]["code"] == "invalid_query"
    # The parameter is an enum: empty is not one of its values, so not "any status".
    assert client.get("/api/v1/runs?status=", headers=auth).get_json()["error"]["code"] == "invalid_query"


def test_models_catalog(client):
    models = client.get("/api/v1/models").get_json()["data"]
    by_id = {m["id"]: m for m in models}
    assert by_id["local/sketch"]["available"] and by_id["local/sketch"]["kind"] == "image"
    gpt = by_id["openai/gpt-image-2"]
    assert not gpt["available"] and "OPENAI_API_KEY" in gpt["unavailableReason"]
    assert "aspect_ratio" in gpt["inputSchema"]["properties"]
    one = client.get("/api/v1/models/local/sketch-video").get_json()
    assert one["id"] == "local/sketch-video" and one["price"]
    assert client.get("/api/v1/models/nobody/nothing").get_json()["error"]["code"] == "not_found"
