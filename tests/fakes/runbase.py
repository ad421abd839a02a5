"""A fake hosted Runbase speaking the hosted Runbase API (not our app): create and read runs, the error
envelope, Idempotency-Key, and our cancel extension.

State knobs (`state.data`):
  key            the accepted `sk-` key (default "sk-upstream-test")
  models         the model ids it offers (default: every id is accepted)
  balance        micro-USD left on the upstream account (default plenty); a run costs 40000
  polls_needed   GETs before a run ends (default 1)
  outcome        "succeed" | "fail" | "never" (default "succeed")
  kind           "image" | "video"
  times          (route, monotonic time) of every create and get, scripted or not
  finish_after   seconds: a run ends by itself that long after its create (GETs no longer
                 move it along); with a `webhook`, the end is called back, as this server's
                 own webhooks are sent: the run object, signed per Standard Webhooks
  webhook_secret the upstream account's signing secret (default replicate.WEBHOOK_SECRET)
  callbacks      (read) every callback sent: {"url", "headers", "body", "status"}
Routes for `state.script` ("create", "get", "cancel", "file"): see tests/fakes/replicate.py
`scripted`; additionally a "create" entry {"sleep_after": s} creates the run, then waits
before answering (an answer lost to the client's timeout after the upstream accepted it).
"""
from __future__ import annotations

import json
import secrets
import time

from flask import Flask, Response, jsonify, request

from tests.fakes.replicate import (WEBHOOK_SECRET, add_file, answer, later, post_callback,
                                   resend, scripted, serve_file, standard_webhook_headers)
from tests.fakes.server import FakeState

__all__ = ["COST", "call_back", "finish", "make_app", "resend"]
COST = 40_000


def _error(status: int, code: str, message: str, headers: dict | None = None) -> Response:
    """Runbase's error envelope."""
    response = jsonify({"error": {"message": message, "code": code}})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _auth_error(state: FakeState) -> Response | None:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer sk-"):
        return _error(401, "missing_api_key", "Send Authorization: Bearer sk-...")
    if header != f"Bearer {state.data.get('key', 'sk-upstream-test')}":
        return _error(401, "invalid_api_key", "Invalid API key")
    return None


def _body_error(state: FakeState, body) -> Response | None:
    if not isinstance(body, dict):
        return _error(400, "invalid_json", "Request body is not valid JSON")
    if not isinstance(body.get("model"), str):
        return _error(400, "missing_model", "model is required")
    if not isinstance(body.get("input"), dict):
        return _error(400, "missing_input", "input is required")
    models = state.data.get("models")
    if models is not None and body["model"] not in models:
        return _error(400, "model_not_found", f"Model '{body['model']}' not found")
    if not isinstance(body["input"].get("prompt"), str):
        return _error(400, "invalid_input", "input.prompt: is required")
    webhook = body.get("webhook")
    if webhook is not None and (not isinstance(webhook, str)
                                or not webhook.startswith(("https://", "http://"))):
        return _error(400, "invalid_input", "'webhook' must be an absolute https URL.")
    return None


def _run_object(run: dict) -> dict:
    return {key: value for key, value in run.items()
            if key not in ("polls", "body") and not key.startswith("_")}


def _advance(state: FakeState, run: dict) -> None:
    """One GET moves a run along: pending → processing → succeeded or failed (unless runs
    end by themselves: `finish_after`)."""
    if run["status"] in ("succeeded", "failed") or "finish_after" in state.data:
        return
    run["polls"] += 1
    outcome = state.data.get("outcome", "succeed")
    if outcome == "never" or run["polls"] < state.data.get("polls_needed", 1):
        run["status"] = "processing"
    else:
        _end(state, run)


def _end(state: FakeState, run: dict) -> None:
    """The run ends as `outcome` says."""
    if state.data.get("outcome", "succeed") == "fail":
        run.update(status="failed", error="The prompt was blocked by the provider's safety system.",
                   errorCode="content_rejected")
    else:
        run.update(status="succeeded",
                   output={"urls": [add_file(state, state.data.get("kind", "image"), run["_base"])]})


def finish(state: FakeState, run_id: str) -> dict | None:
    """End a running run now and, if it has a webhook, call back; returns the record."""
    with state.lock:
        run = state.data["runs"][run_id]
        if run["status"] in ("succeeded", "failed"):
            return None
        _end(state, run)
    return call_back(state, run_id) if run.get("_webhook") else None


def call_back(state: FakeState, run_id: str, *, message_id: str | None = None,
              timestamp: int | None = None, secret: str | None = None) -> dict:
    """POST the run object to its webhook, signed with the account's secret (or `secret`)."""
    run = state.data["runs"][run_id]
    body = json.dumps(_run_object(run), sort_keys=True, separators=(",", ":"))
    secret = secret or state.data.get("webhook_secret", WEBHOOK_SECRET)
    headers = standard_webhook_headers(secret, body, message_id=message_id, timestamp=timestamp)
    headers["User-Agent"] = "Runbase-Webhooks/1"
    return post_callback(state, run["_webhook"], headers, body)


def _create_run(state: FakeState, body: dict, idempotency_key: str | None) -> tuple[dict, bool]:
    """The run for this key (an existing one, returned again) or a new one, charged."""
    runs = state.data.setdefault("runs", {})
    keys = state.data.setdefault("idempotency", {})
    if idempotency_key in keys:
        return runs[keys[idempotency_key]], False
    run = {"id": "run_" + secrets.token_hex(12), "model": body["model"], "status": "pending",
           "costUsd": COST, "input": body["input"], "output": None, "error": None,
           "errorCode": None, "polls": 0, "body": body, "_webhook": body.get("webhook"),
           "_base": request.host_url.rstrip("/")}
    runs[run["id"]] = run
    if idempotency_key:
        keys[idempotency_key] = run["id"]
    state.data["balance"] = state.data.get("balance", 10_000_000) - COST
    state.data["creates"] = state.data.get("creates", 0) + 1
    if state.data.get("finish_after") is not None:
        later(state.data["finish_after"], finish, state, run["id"])
    return run, True


def _create(state: FakeState, body: dict, key: str | None, sleep_after: float | None):
    """Create (or, for a known Idempotency-Key, return again) a run, the way the hosted API does:
    same key + other body → 422, same key while the first is still answered → 409."""
    with state.lock:
        existing = state.data.get("idempotency", {}).get(key) if key else None
        if existing and state.data["runs"][existing]["body"] != body:
            return _error(422, "idempotency_key_reused", "Idempotency-Key reused with another body")
        if key and key in state.data.setdefault("in_flight", set()):
            return _error(409, "idempotency_key_in_use", "The first request is still in flight")
        if not existing and state.data.get("balance", 10_000_000) < COST:
            return _error(402, "insufficient_balance", "Insufficient balance")
        run, created = _create_run(state, body, key)
        if key:
            state.data["in_flight"].add(key)
    try:
        if sleep_after:
            time.sleep(sleep_after)  # accepted, but the answer comes too late for the client
        return jsonify(_run_object(run)), 201 if created else 200
    finally:
        with state.lock:
            state.data.setdefault("in_flight", set()).discard(key)


def make_app(state: FakeState) -> Flask:
    """The fake upstream Runbase."""
    app = Flask("fake_runbase")

    @app.post("/api/v1/runs")
    def create():
        state.record()
        state.data.setdefault("times", []).append(("create", time.monotonic()))
        entry = state.next_scripted("create") or {}
        if (scripted_answer := answer(entry)) is not None:
            return scripted_answer
        error = _auth_error(state) or _body_error(state, request.get_json(silent=True))
        if error is not None:
            return error
        return _create(state, request.get_json(), request.headers.get("Idempotency-Key"),
                       entry.get("sleep_after"))

    @app.get("/api/v1/runs/<run_id>")
    def get(run_id):
        state.record()
        state.data.setdefault("times", []).append(("get", time.monotonic()))
        if (scripted_answer := scripted(state, "get")) is not None:
            return scripted_answer
        if (error := _auth_error(state)) is not None:
            return error
        run = state.data.get("runs", {}).get(run_id)
        if run is None:
            return _error(404, "run_not_found", f"No run with id '{run_id}' for this account.")
        with state.lock:
            _advance(state, run)
        return jsonify(_run_object(run))

    @app.post("/api/v1/runs/<run_id>/cancel")
    def cancel(run_id):
        state.record()
        if (scripted_answer := scripted(state, "cancel")) is not None:
            return scripted_answer
        if (error := _auth_error(state)) is not None:
            return error
        run = state.data.get("runs", {}).get(run_id)
        if run is None:
            return _error(404, "run_not_found", f"No run with id '{run_id}' for this account.")
        if run["status"] in ("pending", "processing"):
            run.update(status="failed", error="Canceled.", errorCode="canceled")
        return jsonify(_run_object(run))

    @app.post("/api/v1/files")
    def upload():
        call = state.record()  # reads the parts: take the bytes from the record
        if (error := _auth_error(state)) is not None:
            return error
        part, data = request.files.get("file"), call.files.get("file")
        if part is None or data is None:
            return _error(400, "invalid_input", "Send the file in a part named 'file'.")
        with state.lock:
            uploads = state.data.setdefault("uploads", {})
            name = f"upload-{len(uploads) + 1}"
            uploads[name] = (data, part.mimetype)
        return jsonify({"id": name, "url": f"{request.host_url}api/v1/files/{name}",
                        "contentType": part.mimetype, "size": len(data)}), 201

    @app.get("/files/<name>")
    def file(name):
        return scripted(state, "file") or serve_file(state, name)

    return app
