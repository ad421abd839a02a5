"""POST /callbacks/<adapter>/<run id>/<token>: what is refused (4xx, nothing recorded), what
is acknowledged and ignored (200), and what is handed to the worker, on both databases."""
from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from runbase_web.extensions import db
from runbase_web.models import ProviderCallback, Run, utcnow
from runbase_web.services import callbacks
from runbase_web.worker.claim import release
from tests.fakes.replicate import WEBHOOK_SECRET, standard_webhook_headers

MODEL = "openai/gpt-image-2"  # routed to the upstream Runbase: no OpenAI key here
UPSTREAM_ID = "run_upstream0000000000001"
OTHER_SECRET = "whsec_QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI="


def create_run(client, auth) -> str:
    """A run created (and charged) through the API; no worker takes it."""
    response = client.post("/api/v1/runs", headers=auth,
                           json={"model": MODEL, "input": {"prompt": "a fox"}})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def in_flight(app, run_id: str, *, upstream_id: str | None = UPSTREAM_ID, adapter="runbase",
              lease_owner: str | None = None) -> None:
    """Put the run where a worker leaves it between polls: processing, its job upstream,
    next look in a minute (or, with `lease_owner`, held by that worker)."""
    with app.app_context():
        db.session.execute(update(Run).where(Run.id == run_id).values(
            status="processing", adapter=adapter, upstream_id=upstream_id,
            next_check_at=utcnow() + timedelta(seconds=60), lease_owner=lease_owner,
            lease_until=utcnow() + timedelta(seconds=30) if lease_owner else None))
        db.session.commit()


def path_for(app, run_id: str, adapter: str = "runbase") -> str:
    """The callback path of the run for `adapter`, with its right token."""
    token = callbacks.callback_token(app.config["SECRET_KEY"], adapter, run_id)
    return f"/callbacks/{adapter}/{run_id}/{token}"


def upstream_run(status: str = "succeeded", upstream_id: str = UPSTREAM_ID) -> dict:
    """An upstream run object as the upstream's webhook carries it."""
    return {"id": upstream_id, "status": status, "model": MODEL, "costUsd": 40000,
            "output": {"urls": ["https://upstream.invalid/files/a.png"]} if status == "succeeded"
            else None, "error": None, "errorCode": None}


def post(client, path: str, run_object: dict, *, secret: str = WEBHOOK_SECRET,
         message_id: str | None = None, timestamp: int | None = None, body: str | None = None,
         headers: dict | None = None):
    """POST a callback signed per Standard Webhooks (by the reference package)."""
    body = json.dumps(run_object) if body is None else body
    signed = standard_webhook_headers(secret, body, message_id=message_id, timestamp=timestamp)
    return client.post(path, data=body.encode(),
                       headers=signed if headers is None else headers)


def the_run(app, run_id: str) -> Run:
    """The run as the database has it now."""
    with app.app_context():
        return db.session.get(Run, run_id)


def remembered(app) -> list[str]:
    """The message ids acted on (provider_callbacks)."""
    with app.app_context():
        return list(db.session.scalars(select(ProviderCallback.id)))


def test_a_signed_callback_is_handed_to_the_worker(app, client, auth):
    run_id = create_run(client, auth)
    in_flight(app, run_id)
    response = post(client, path_for(app, run_id), upstream_run(), message_id="msg_first")
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"received": True, "outcome": "accepted"}
    run = the_run(app, run_id)
    assert run.callback_body == upstream_run()
    assert run.next_check_at <= utcnow()  # due now: the worker reads it at once
    assert remembered(app) == ["runbase:msg_first"]


def test_csrf_does_not_apply_to_callbacks(app, client, auth):
    app.config["WTF_CSRF_ENABLED"] = True
    run_id = create_run(client, auth)
    in_flight(app, run_id)
    response = post(client, path_for(app, run_id), upstream_run())
    assert response.status_code == 200, response.get_data(as_text=True)


def test_wrong_urls_are_404(app, client, auth):
    run_id = create_run(client, auth)
    in_flight(app, run_id)
    good = path_for(app, run_id)
    wrong_token = good[:-4] + ("0000" if not good.endswith("0000") else "1111")
    for path in (wrong_token, path_for(app, run_id, "openai"), path_for(app, run_id, "nope"),
                 path_for(app, run_id).replace(run_id, "run_" + "x" * 24)):
        response = post(client, path, upstream_run())
        assert response.status_code == 404, path
        assert response.get_json()["error"]["code"] == "not_found"
    assert the_run(app, run_id).callback_body is None and remembered(app) == []


@pytest.mark.parametrize("case", ["no signature", "no id", "no timestamp", "old timestamp",
                                  "future timestamp", "wrong secret", "tampered body",
                                  "only other schemes", "not a number"])
def test_unsigned_stale_and_forged_callbacks_are_refused(app, client, auth, case):
    run_id = create_run(client, auth)
    in_flight(app, run_id)
    body = json.dumps(upstream_run())
    headers = standard_webhook_headers(WEBHOOK_SECRET, body)
    if case == "no signature":
        del headers["webhook-signature"]
    elif case == "no id":
        del headers["webhook-id"]
    elif case == "no timestamp":
        del headers["webhook-timestamp"]
    elif case == "old timestamp":
        headers = standard_webhook_headers(WEBHOOK_SECRET, body, timestamp=int(time.time()) - 301)
    elif case == "future timestamp":
        headers = standard_webhook_headers(WEBHOOK_SECRET, body, timestamp=int(time.time()) + 301)
    elif case == "wrong secret":
        headers = standard_webhook_headers(OTHER_SECRET, body)
    elif case == "tampered body":
        body = body.replace('"succeeded"', '"failed"')
    elif case == "only other schemes":
        headers["webhook-signature"] = headers["webhook-signature"].replace("v1,", "v1a,")
    elif case == "not a number":
        headers["webhook-timestamp"] = "soon"
    response = post(client, path_for(app, run_id), {}, body=body, headers=headers)
    expected = {"no signature": 400, "no id": 400, "no timestamp": 400, "old timestamp": 400,
                "future timestamp": 400, "wrong secret": 401, "tampered body": 401,
                "only other schemes": 401, "not a number": 400}[case]
    assert response.status_code == expected, response.get_json()
    run = the_run(app, run_id)
    assert run.callback_body is None and run.next_check_at > utcnow()
    assert remembered(app) == []


def test_several_signatures_pass_if_one_verifies(app, client, auth):
    # Standard Webhooks senders list one signature per secret while rotating.
    run_id = create_run(client, auth)
    in_flight(app, run_id)
    body = json.dumps(upstream_run())
    headers = standard_webhook_headers(WEBHOOK_SECRET, body)
    other = standard_webhook_headers(OTHER_SECRET, body, message_id=headers["webhook-id"],
                                     timestamp=int(headers["webhook-timestamp"]))
    headers["webhook-signature"] = f"{other['webhook-signature']} {headers['webhook-signature']}"
    response = post(client, path_for(app, run_id), {}, body=body, headers=headers)
    assert response.get_json()["outcome"] == "accepted"


def test_a_replay_is_a_duplicate_and_a_new_message_is_taken(app, client, auth):
    run_id = create_run(client, auth)
    in_flight(app, run_id)
    body = json.dumps(upstream_run("failed"))
    headers = standard_webhook_headers(WEBHOOK_SECRET, body)
    first = client.post(path_for(app, run_id), data=body.encode(), headers=headers)
    replay = client.post(path_for(app, run_id), data=body.encode(), headers=headers)
    assert [first.get_json()["outcome"], replay.get_json()["outcome"]] == ["accepted", "duplicate"]
    assert replay.status_code == 200  # the sender stops; nothing happens
    # The worker took the first body meanwhile; a replay must not bring it back.
    with app.app_context():
        db.session.execute(update(Run).where(Run.id == run_id).values(callback_body=None))
        db.session.commit()
    again = client.post(path_for(app, run_id), data=body.encode(), headers=headers)
    assert again.get_json()["outcome"] == "duplicate"
    assert the_run(app, run_id).callback_body is None
    # Another message (the sender's retry is the same id; this is a new one): taken.
    fresh = post(client, path_for(app, run_id), upstream_run())
    assert fresh.get_json()["outcome"] == "accepted"
    assert the_run(app, run_id).callback_body == upstream_run()
    assert len(remembered(app)) == 2


def test_callbacks_about_other_jobs_or_runs_are_ignored_and_recorded_nowhere(app, client, auth):
    run_id = create_run(client, auth)
    in_flight(app, run_id)
    other_job = post(client, path_for(app, run_id), upstream_run(upstream_id="run_someoneelse"))
    unknown_run = post(client, path_for(app, "run_" + "u" * 24), upstream_run())
    assert other_job.status_code == unknown_run.status_code == 200
    assert other_job.get_json()["outcome"] == unknown_run.get_json()["outcome"] == "ignored"
    # The run's adapter is another one than the URL's: not this provider's job.
    in_flight(app, run_id, adapter="replicate")
    assert post(client, path_for(app, run_id), upstream_run()).get_json()["outcome"] == "ignored"
    run = the_run(app, run_id)
    assert run.callback_body is None and run.next_check_at > utcnow()
    assert remembered(app) == []


def test_callbacks_for_ended_runs_change_nothing(app, client, auth):
    run_id = create_run(client, auth)
    in_flight(app, run_id)
    assert client.post(f"/api/v1/runs/{run_id}/cancel", headers=auth).status_code == 200
    before = the_run(app, run_id)
    response = post(client, path_for(app, run_id), upstream_run())
    assert response.status_code == 200 and response.get_json()["outcome"] == "ignored"
    after = the_run(app, run_id)
    assert (after.status, after.error_code, after.callback_body) == ("failed", "canceled", None)
    assert after.next_check_at == before.next_check_at  # the upstream cancel's schedule stays
    assert remembered(app) == []


def test_a_callback_before_the_job_id_is_committed_waits_for_the_worker(app, client, auth):
    run_id = create_run(client, auth)
    in_flight(app, run_id, upstream_id=None, lease_owner="worker-1")
    response = post(client, path_for(app, run_id), upstream_run())
    assert response.get_json()["outcome"] == "accepted"
    held = the_run(app, run_id)
    assert held.callback_body == upstream_run() and held.next_check_at > utcnow()
    # The worker's create answers; it commits the job id with a fallback poll time, and,
    # seeing the callback, makes the run due at once.
    with app.app_context():
        assert release(db.session, run_id, "worker-1", check_after=60, upstream_id=UPSTREAM_ID)
        db.session.commit()
    assert the_run(app, run_id).next_check_at <= utcnow()


def test_a_released_run_without_a_callback_keeps_its_poll_time(app, client, auth):
    run_id = create_run(client, auth)
    in_flight(app, run_id, lease_owner="worker-1")
    with app.app_context():
        assert release(db.session, run_id, "worker-1", check_after=60)
        db.session.commit()
    assert the_run(app, run_id).next_check_at > utcnow()


@pytest.mark.parametrize("body", ["not json", "[1, 2]", '{"status": "succeeded"}',
                                  '{"id": "x", "n": NaN}'])
def test_signed_bodies_that_are_no_run_object_are_refused(app, client, auth, body):
    run_id = create_run(client, auth)
    in_flight(app, run_id)
    response = post(client, path_for(app, run_id), {}, body=body)
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "bad_body"
    assert remembered(app) == []


def test_upstream_callbacks_need_the_webhook_secret(app, client, auth):
    run_id = create_run(client, auth)
    in_flight(app, run_id)
    env = dict(app.config["PROVIDER_ENV"])
    del env["RUNBASE_UPSTREAM_WEBHOOK_SECRET"]
    app.config["PROVIDER_ENV"] = env
    assert post(client, path_for(app, run_id), upstream_run()).status_code == 404


def test_old_message_ids_are_forgotten(app):
    now = utcnow()
    with app.app_context():
        db.session.add_all([
            ProviderCallback(id="runbase:old", received_at=now - callbacks.SEEN_RETENTION
                             - timedelta(seconds=1)),
            ProviderCallback(id="runbase:recent", received_at=now - timedelta(seconds=30))])
        db.session.commit()
        assert callbacks.prune_seen(db.session, now) == 1
        db.session.commit()
        assert list(db.session.scalars(select(ProviderCallback.id))) == ["runbase:recent"]
        assert db.session.scalar(select(func.count()).select_from(ProviderCallback)) == 1


def test_callback_urls_are_per_run_and_only_where_callbacks_can_be_checked(app):
    secret = app.config["SECRET_KEY"]
    env = app.config["PROVIDER_ENV"]
    url = callbacks.callback_url(public_url="https://runbase.example/", secret_key=secret, env=env,
                                 adapter="runbase", run_id="run_a")
    token = callbacks.callback_token(secret, "runbase", "run_a")
    assert url == f"https://runbase.example/callbacks/runbase/run_a/{token}"
    assert len(token) == 32
    assert token != callbacks.callback_token(secret, "runbase", "run_b")
    assert token != callbacks.callback_token(secret, "replicate", "run_a")
    assert token != callbacks.callback_token("another key", "runbase", "run_a")
    none = dict(public_url="https://runbase.example", secret_key=secret, run_id="run_a")
    assert callbacks.callback_url(**{**none, "public_url": ""}, env=env, adapter="runbase") is None
    assert callbacks.callback_url(**none, env=env, adapter="openai") is None
    assert callbacks.callback_url(**none, env=env, adapter=None) is None
    assert callbacks.callback_url(**none, env={}, adapter="runbase") is None  # no secret
    assert callbacks.callback_url(**none, env={"REPLICATE_API_TOKEN": "r8"}, adapter="replicate")
    assert callbacks.callback_url(**none, env={}, adapter="fal")
