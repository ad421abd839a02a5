"""A fake Replicate predictions API, plus the media, scripting and callback helpers the
fal and upstream-Runbase fakes share.

State knobs (`state.data`):
  token          the accepted Bearer token (default "r8-test")
  polls_needed   GETs a prediction needs before it ends (default 1)
  outcome        "succeed" | "fail" | "never" (stays processing) (default "succeed")
  error          the failure message for outcome "fail"
  output_shape   "list" | "string" | "nested" (default "list")
  kind           "image" | "video" (default "image")
  finish_after   seconds: a prediction ends by itself that long after its create (and GETs
                 no longer move it along); with a `webhook`, the end is called back
  call_back_first  True: the prediction ends, and is called back, before the create answers
  webhook_secret the account's signing secret, served at /v1/webhooks/default/secret
  sign_with      the secret callbacks are signed with (default webhook_secret; another one
                 forges them)
  callbacks      (read) every callback sent: {"url", "headers", "body", "status"}
Callbacks are signed per Standard Webhooks with the reference `standardwebhooks` package
(not the app's code), and sent with `webhook_events_filter` respected.
Routes for `state.script`: "create", "get", "cancel", "secret", "file". A scripted answer is
a dict:
  {"status": 429, "json": {...}, "headers": {...}} answers with that;
  {"status": 200, "raw": "{not json"} sends a broken body;
  {"sleep": 1.5} waits first (then answers normally unless "status" is given).
Output files are served by the fake itself and expire: 404 after the first download.
"""
from __future__ import annotations

import io
import itertools
import json
import re
import secrets
import threading
import time
from datetime import datetime, timezone

import requests
from flask import Flask, Response, jsonify, request
from PIL import Image
from standardwebhooks.webhooks import Webhook

from runbase_web.providers.local_media import sketch_mp4
from tests.fakes.server import FakeState

_counter = itertools.count(1)
#: Guards the files of every fake (state.lock is often held by the caller already).
_FILES_LOCK = threading.Lock()
#: The default signing secret of the fakes that sign with Standard Webhooks.
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#: Seconds a fake waits for our answer to a callback.
CALLBACK_TIMEOUT = 10.0


# --- shared by the fakes -----------------------------------------------------------------


def tiny_png(color=(200, 40, 40)) -> bytes:
    """A real 8×8 PNG."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format="PNG")
    return buffer.getvalue()


_MP4_CACHE: dict[str, bytes] = {}


def tiny_mp4() -> bytes:
    """A real one-second 64×64 H.264 MP4 (rendered once per test session)."""
    if "mp4" not in _MP4_CACHE:
        _MP4_CACHE["mp4"] = sketch_mp4("fake provider video", 7, 64, 64, 1)
    return _MP4_CACHE["mp4"]


def add_file(state: FakeState, kind: str, base: str | None = None) -> str:
    """Keep a new output file on the fake; returns its absolute URL on this server (`base`:
    the server's URL, for a job ending outside a request)."""
    data, ext = (tiny_mp4(), "mp4") if kind == "video" else (tiny_png(), "png")
    name = f"out-{next(_counter)}-{secrets.token_hex(4)}.{ext}"
    with _FILES_LOCK:
        state.data.setdefault("files", {})[name] = data
    return f"{(base or request.host_url).rstrip('/')}/files/{name}"


def serve_file(state: FakeState, name: str) -> Response:
    """Serve an output once: like provider URLs that expire, it is 404 afterwards."""
    with _FILES_LOCK:
        data = state.data.setdefault("files", {}).pop(name, None)
        if data is not None:
            state.data.setdefault("downloaded", []).append(name)
    if data is None:
        return Response("expired", status=404)
    content_type = "video/mp4" if name.endswith(".mp4") else "image/png"
    return Response(data, content_type=content_type)


def scripted(state: FakeState, route: str) -> Response | None:
    """Apply the next scripted answer for `route`: a wait, and/or an answer to send."""
    return answer(state.next_scripted(route))


def answer(entry: dict | None) -> Response | None:
    """Carry out one scripted entry: wait if asked, then the scripted response or None."""
    if not entry:
        return None
    if entry.get("sleep"):
        time.sleep(entry["sleep"])
    if "status" not in entry:
        return None
    body = json.dumps(entry["json"]) if "json" in entry else entry.get("raw", "")
    return Response(body, status=entry["status"], headers=entry.get("headers", {}),
                    content_type="application/json")


def standard_webhook_headers(secret: str, body: str, *, message_id: str | None = None,
                             timestamp: int | None = None) -> dict[str, str]:
    """The headers of a Standard Webhooks message (as Replicate and Runbase send them)."""
    message_id = message_id or "msg_" + secrets.token_hex(12)
    sent_at = datetime.fromtimestamp(time.time() if timestamp is None else timestamp, timezone.utc)
    return {"webhook-id": message_id, "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": Webhook(secret).sign(message_id, sent_at, body),
            "Content-Type": "application/json"}


def post_callback(state: FakeState, url: str, headers: dict, body: str) -> dict:
    """POST one callback to `url` and record it (with our answer's status, None when it
    could not be delivered, and its JSON as "answer") in state.data["callbacks"]; returns the
    record."""
    record = {"url": url, "headers": dict(headers), "body": body, "status": None, "answer": None}
    try:
        response = requests.post(url, data=body.encode(), headers=headers,
                                 timeout=CALLBACK_TIMEOUT)
    except requests.RequestException as error:
        record["error"] = str(error)
    else:
        record["status"] = response.status_code
        try:
            record["answer"] = response.json()
        except ValueError:
            pass
    with state.lock:
        state.data.setdefault("callbacks", []).append(record)
    return record


def resend(state: FakeState, record: dict, **header_changes) -> dict:
    """Send a recorded callback again, byte for byte (a replay), with headers changed if
    asked; returns the new record."""
    return post_callback(state, record["url"], {**record["headers"], **header_changes},
                         record["body"])


def later(delay: float, action, *args) -> None:
    """Run `action(*args)` after `delay` seconds on a daemon thread (a job ending by itself)."""
    timer = threading.Timer(delay, action, args)
    timer.daemon = True
    timer.start()


# --- Replicate ---------------------------------------------------------------------------


def _problem(status: int, title: str, detail: str) -> Response:
    """Replicate's problem-details error body."""
    response = jsonify({"title": title, "detail": detail, "status": status})
    response.status_code = status
    return response


def _authorized(state: FakeState) -> bool:
    return request.headers.get("Authorization") == f"Bearer {state.data.get('token', 'r8-test')}"


def _output(state: FakeState, base: str):
    """The prediction's output in the configured shape."""
    url = add_file(state, state.data.get("kind", "image"), base)
    shape = state.data.get("output_shape", "list")
    if shape == "string":
        return url
    if shape == "nested":
        return [{"image": url, "meta": {"seed": 1}}]
    return [url]


def _advance(state: FakeState, prediction: dict) -> None:
    """One GET moves a running prediction along; it ends after `polls_needed` GETs (unless
    predictions end by themselves: `finish_after`)."""
    if prediction["status"] not in ("starting", "processing") or "finish_after" in state.data:
        return
    prediction["polls"] += 1
    outcome = state.data.get("outcome", "succeed")
    if outcome == "never" or prediction["polls"] < state.data.get("polls_needed", 1):
        prediction["status"] = "processing"
    else:
        _end(state, prediction)


def _end(state: FakeState, prediction: dict) -> None:
    """The prediction ends as `outcome` says (a running one; "never" keeps it running)."""
    outcome = state.data.get("outcome", "succeed")
    if prediction["status"] not in ("starting", "processing") or outcome == "never":
        return
    if outcome == "fail":
        prediction["status"] = "failed"
        prediction["error"] = state.data.get("error", "CUDA out of memory")
    else:
        prediction["status"] = "succeeded"
        prediction["output"] = _output(state, prediction["_base"])
    prediction["completed_at"] = datetime.now(timezone.utc).isoformat()


def _public(prediction: dict) -> dict:
    """The prediction object as the API (and a webhook) shows it."""
    base = prediction["_base"]
    return {key: value for key, value in prediction.items()
            if key != "polls" and not key.startswith("_")} | {
        "urls": {"get": f"{base}/v1/predictions/{prediction['id']}",
                 "cancel": f"{base}/v1/predictions/{prediction['id']}/cancel"}}


def finish(state: FakeState, prediction_id: str, *, status: str | None = None) -> dict | None:
    """End a prediction now as `outcome` says, or force its `status` (e.g. "succeeded" for
    a prediction we canceled, as when the end and the cancel cross); then call back if it
    has a webhook. Returns the callback's record, if one was sent."""
    with state.lock:
        prediction = state.data["predictions"][prediction_id]
        if status == "succeeded" and prediction["status"] != "succeeded":
            prediction["status"], prediction["output"] = "succeeded", _output(state, prediction["_base"])
        elif status is not None:
            prediction["status"] = status
        else:
            _end(state, prediction)
        ended = prediction["status"] not in ("starting", "processing")
    if ended and prediction.get("_webhook") and "completed" in prediction["_events"]:
        return call_back(state, prediction_id)
    return None


def call_back(state: FakeState, prediction_id: str, *, message_id: str | None = None,
              timestamp: int | None = None, secret: str | None = None) -> dict:
    """POST the prediction to its webhook, signed (with `sign_with`, or `secret`)."""
    prediction = state.data["predictions"][prediction_id]
    body = json.dumps(_public(prediction))
    secret = secret or state.data.get("sign_with") or state.data.get("webhook_secret", WEBHOOK_SECRET)
    headers = standard_webhook_headers(secret, body, message_id=message_id, timestamp=timestamp)
    headers["User-Agent"] = "Replicate-Webhooks/1 (fake)"
    return post_callback(state, prediction["_webhook"], headers, body)


def make_app(state: FakeState) -> Flask:
    """The fake Replicate server."""
    app = Flask("fake_replicate")

    def create(model: str | None):
        state.record()
        if (answer := scripted(state, "create")) is not None:
            return answer
        if not _authorized(state):
            return _problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("input"), dict):
            return _problem(422, "Input validation failed", "input: Required")
        cancel_after = request.headers.get("Cancel-After")
        if cancel_after is not None and not re.fullmatch(r"\d+(ms|s|m|h)", cancel_after):
            return _problem(422, "Invalid Cancel-After", f"cannot parse duration {cancel_after!r}")
        if model is None and not isinstance(body.get("version"), str):
            return _problem(422, "Invalid version or not permitted",
                            "The specified version does not exist")
        events = body.get("webhook_events_filter", ["start", "output", "logs", "completed"])
        if "webhook" in body and (not isinstance(body["webhook"], str)
                                  or not body["webhook"].startswith(("https://", "http://"))):
            return _problem(422, "Invalid webhook", "webhook: must be an absolute URL")
        if not isinstance(events, list) or not set(events) <= {"start", "output", "logs", "completed"}:
            return _problem(422, "Invalid webhook_events_filter", "unknown event type")
        prediction = {"id": secrets.token_hex(13), "model": model or "owner/name",
                      "version": body.get("version", "hidden"), "input": body["input"],
                      "output": None, "error": None, "status": "starting", "logs": "",
                      "data_removed": False, "polls": 0, "_base": request.host_url.rstrip("/"),
                      "_webhook": body.get("webhook"), "_events": events}
        with state.lock:
            state.data.setdefault("predictions", {})[prediction["id"]] = prediction
            state.data["submits"] = state.data.get("submits", 0) + 1
        if state.data.get("call_back_first"):
            finish(state, prediction["id"])  # the callback overtakes the create's answer
        elif state.data.get("finish_after") is not None:
            later(state.data["finish_after"], finish, state, prediction["id"])
        response = jsonify(_public(prediction))
        response.status_code = 201
        return response

    @app.post("/v1/models/<owner>/<name>/predictions")
    def create_for_model(owner, name):
        return create(f"{owner}/{name}")

    @app.post("/v1/predictions")
    def create_for_version():
        return create(None)

    @app.get("/v1/predictions/<prediction_id>")
    def get(prediction_id):
        state.record()
        if (answer := scripted(state, "get")) is not None:
            return answer
        if not _authorized(state):
            return _problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        prediction = state.data.get("predictions", {}).get(prediction_id)
        if prediction is None:
            return _problem(404, "Not found", "The requested resource could not be found.")
        with state.lock:
            _advance(state, prediction)
        return jsonify(_public(prediction))

    @app.post("/v1/predictions/<prediction_id>/cancel")
    def cancel(prediction_id):
        state.record()
        if (answer := scripted(state, "cancel")) is not None:
            return answer
        prediction = state.data.get("predictions", {}).get(prediction_id)
        if prediction is None or not _authorized(state):
            return _problem(404, "Not found", "The requested resource could not be found.")
        if prediction["status"] in ("starting", "processing"):
            prediction["status"] = "canceled"
        return jsonify(_public(prediction))

    @app.get("/v1/webhooks/default/secret")
    def webhook_secret():
        """The account's webhook signing secret, as `{"key": "whsec_..."}`."""
        state.record()
        if (answer := scripted(state, "secret")) is not None:
            return answer
        if not _authorized(state):
            return _problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        return jsonify({"key": state.data.get("webhook_secret", WEBHOOK_SECRET)})

    @app.get("/files/<name>")
    def file(name):
        return scripted(state, "file") or serve_file(state, name)

    return app
