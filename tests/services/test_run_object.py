"""The public run object and the one rule for absolute URLs: the API's answers and the
webhook payloads share both, and the base URL is always given, never looked up."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from sqlalchemy import select

from runbase_web import state
from runbase_web.extensions import db
from runbase_web.models import Run, WebhookDelivery
from runbase_web.services import runs, webhooks
from runbase_web.services.run_object import iso_time, run_object
from runbase_web.urls import absolute_url


def test_absolute_url_joins_a_base_and_a_site_path():
    assert absolute_url("https://rb.example", "/files/generated/a.png") == \
        "https://rb.example/files/generated/a.png"
    assert absolute_url("https://rb.example/", "/s/token") == "https://rb.example/s/token"
    assert absolute_url("", "/files/generated/a.png") == "/files/generated/a.png"


def test_iso_time_is_utc_with_milliseconds():
    moment = datetime(2026, 6, 1, 12, 0, 4, 200_999, tzinfo=timezone.utc)
    assert iso_time(moment) == "2026-06-01T12:00:04.200Z"
    assert iso_time(None) is None


def _succeeded_run() -> Run:
    at = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
    return Run(id="run_x", model="local/sketch", status="succeeded", cost_micros=1000,
               input={"prompt": "p"}, output_urls=["/files/generated/a.png"], created_at=at,
               started_at=at, completed_at=at)


def test_output_urls_are_absolute_on_the_given_base_and_site_paths_without_one():
    run = _succeeded_run()
    assert run_object(run, "https://rb.example")["output"] == {
        "urls": ["https://rb.example/files/generated/a.png"]}
    assert run_object(run, "")["output"] == {"urls": ["/files/generated/a.png"]}
    run.status = "failed"
    assert run_object(run, "https://rb.example")["output"] is None


def test_the_webhook_payload_is_the_run_object_on_the_public_url_it_is_given(app, user):
    with app.app_context():
        run = state.run_creator().create(db.session, user_id=user.id, model_id="local/test",
                                         raw_input={"prompt": "x"}, source="api",
                                         webhook_url="https://hooks.example.org/hook")
        db.session.commit()
        assert runs.mark_succeeded(db.session, run.id, ["/files/generated/a.png"],
                                   public_url="https://rb.example")
        db.session.commit()
        delivery = db.session.scalars(select(WebhookDelivery)
                                      .where(WebhookDelivery.run_id == run.id)).one()
        payload = json.loads(delivery.payload)
        assert payload == run_object(db.session.get(Run, run.id), "https://rb.example")
        assert payload["output"]["urls"] == ["https://rb.example/files/generated/a.png"]
        assert delivery.payload == webhooks.payload_for(db.session.get(Run, run.id),
                                                        "https://rb.example")
