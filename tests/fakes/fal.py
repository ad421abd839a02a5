"""A fake fal.ai queue API.

Submit is `POST /<owner>/<app>[/<path>]` with `Authorization: Key <key>`; status, result
and cancel live under `/<owner>/<app>/requests/<id>` (without the path, as on fal), and
the submit answer carries those URLs.

State knobs (`state.data`):
  key            the accepted key (default "fal-test")
  polls_needed   the status GET that answers COMPLETED (default 2; earlier ones answer
                 202 IN_QUEUE, then IN_PROGRESS)
  outcome        "succeed" | "fail" (result 422 with a `detail` list) |
                 "error_status" (COMPLETED with `error`/`error_type`) | "never"
  kind           "image" (`images[]`) | "video" (`video`) (default "image")
  finish_after   seconds: a request completes by itself that long after its submit (status
                 GETs no longer move it along); with `?fal_webhook=`, it is called back
  sign_with      an Ed25519 private key callbacks are signed with instead of the published
                 one (forgeries)
  callbacks      (read) every callback sent: {"url", "headers", "body", "status"}
The published key set is at /.well-known/jwks.json (point FAL_WEBHOOK_JWKS_URL at it).
Callbacks are signed as fal documents: hex Ed25519 over
`{request id}\n{user id}\n{timestamp}\n{hex SHA-256 of the body}`.
Routes for `state.script` ("submit", "status", "result", "cancel", "file"): see
tests/fakes/replicate.py `scripted`.
"""
from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from flask import Flask, Response, jsonify, request

from tests.fakes.replicate import add_file, later, post_callback, resend, scripted, serve_file
from tests.fakes.server import FakeState

USER_ID = "fake-fal-user"
__all__ = ["call_back", "finish", "make_app", "post_callback", "resend", "signing_key"]


def _detail(status: int, detail) -> Response:
    """fal's error body: `{"detail": "text"}` or a list of validation items."""
    response = jsonify({"detail": detail})
    response.status_code = status
    return response


def _authorized(state: FakeState) -> bool:
    return request.headers.get("Authorization") == f"Key {state.data.get('key', 'fal-test')}"


def _urls(owner: str, app_name: str, request_id: str) -> dict:
    base = f"{request.host_url.rstrip('/')}/{owner}/{app_name}/requests/{request_id}"
    return {"request_id": request_id, "response_url": base, "status_url": f"{base}/status",
            "cancel_url": f"{base}/cancel"}


def _advance(state: FakeState, job: dict) -> None:
    """Each status GET moves the request along: IN_QUEUE → IN_PROGRESS → COMPLETED (unless
    requests complete by themselves: `finish_after`)."""
    if job["status"] == "COMPLETED" or job.get("canceled") or "finish_after" in state.data:
        return
    job["polls"] += 1
    if state.data.get("outcome") == "never" or job["polls"] < state.data.get("polls_needed", 2):
        job["status"] = "IN_QUEUE" if job["polls"] == 1 else "IN_PROGRESS"
    else:
        job["status"] = "COMPLETED"


FLAGGED = [{"loc": ["body", "prompt"], "msg": "The prompt was flagged.",
            "type": "content_policy_violation"}]


def _result(state: FakeState, job: dict) -> Response:
    """The model output, or the model's 422 validation error."""
    if state.data.get("outcome") == "fail":
        return _detail(422, FLAGGED)
    return jsonify(_result_body(state, job))


def _result_body(state: FakeState, job: dict) -> dict:
    """The model output (made once per request)."""
    if "result" not in job:
        url = add_file(state, state.data.get("kind", "image"), job["base"])
        if state.data.get("kind") == "video":
            job["result"] = {"video": {"url": url, "content_type": "video/mp4",
                                       "file_name": "out.mp4", "file_size": 1000}}
        else:
            job["result"] = {"images": [{"url": url, "content_type": "image/png",
                                         "width": 8, "height": 8}],
                             "seed": 42, "has_nsfw_concepts": [False]}
    return job["result"]


# --- callbacks -------------------------------------------------------------------------------


def signing_key(state: FakeState) -> Ed25519PrivateKey:
    """The fake's own Ed25519 key, the one its key set publishes (made once per fake)."""
    with state.lock:
        if "signing_key" not in state.data:
            state.data["signing_key"] = Ed25519PrivateKey.generate()
        return state.data["signing_key"]


def _jwk(key: Ed25519PrivateKey, kid: str) -> dict:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "kid": kid, "use": "sig", "alg": "EdDSA",
            "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode()}


def fal_headers(key: Ed25519PrivateKey, request_id: str, body: bytes, *,
                timestamp: int | None = None, user_id: str = USER_ID) -> dict[str, str]:
    """The headers of a fal callback, signed as fal documents."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    message = "\n".join([request_id, user_id, stamp, hashlib.sha256(body).hexdigest()]).encode()
    return {"X-Fal-Webhook-Request-Id": request_id, "X-Fal-Webhook-User-Id": user_id,
            "X-Fal-Webhook-Timestamp": stamp,
            "X-Fal-Webhook-Signature": key.sign(message).hex(),
            "Content-Type": "application/json"}


def callback_body(state: FakeState, request_id: str) -> dict:
    """What fal POSTs when a request ends: OK with the result, or ERROR with the details."""
    job = state.data["requests"][request_id]
    body = {"request_id": request_id, "gateway_request_id": request_id}
    if state.data.get("outcome") == "fail":
        return {**body, "status": "ERROR", "error": "Invalid status code: 422",
                "payload": {"detail": FLAGGED}}
    return {**body, "status": "OK", "payload": _result_body(state, job)}


def finish(state: FakeState, request_id: str) -> dict | None:
    """Complete a request now and, if it has a webhook, call back; returns the record."""
    with state.lock:
        job = state.data["requests"][request_id]
        if job.get("canceled"):
            return None
        job["status"] = "COMPLETED"
    return call_back(state, request_id) if job.get("webhook") else None


def call_back(state: FakeState, request_id: str, *, timestamp: int | None = None,
              key: Ed25519PrivateKey | None = None) -> dict:
    """POST the request's outcome to its webhook, signed (with `sign_with`, or `key`)."""
    job = state.data["requests"][request_id]
    body = json.dumps(callback_body(state, request_id))
    key = key or state.data.get("sign_with") or signing_key(state)
    headers = fal_headers(key, request_id, body.encode(), timestamp=timestamp)
    return post_callback(state, job["webhook"], headers, body)


def make_app(state: FakeState) -> Flask:
    """The fake fal queue server."""
    app = Flask("fake_fal")

    def find(owner: str, app_name: str, request_id: str) -> dict | None:
        job = state.data.get("requests", {}).get(request_id)
        return job if job and job["owner_app"] == f"{owner}/{app_name}" else None

    @app.get("/<owner>/<app_name>/requests/<request_id>/status")
    def status(owner, app_name, request_id):
        state.record()
        if (answer := scripted(state, "status")) is not None:
            return answer
        if not _authorized(state):
            return _detail(401, "Invalid Key authorization header")
        job = find(owner, app_name, request_id)
        if job is None:
            return _detail(404, "Request not found")
        with state.lock:
            _advance(state, job)
        body = {"status": job["status"], **_urls(owner, app_name, request_id)}
        if job["status"] == "IN_QUEUE":
            body["queue_position"] = 0
        if job["status"] == "COMPLETED" and state.data.get("outcome") == "error_status":
            body.update(error="Runner disconnected", error_type="runner_disconnected")
        response = jsonify(body)
        response.status_code = 200 if job["status"] == "COMPLETED" else 202
        return response

    @app.get("/<owner>/<app_name>/requests/<request_id>")
    def result(owner, app_name, request_id):
        state.record()
        if (answer := scripted(state, "result")) is not None:
            return answer
        job = find(owner, app_name, request_id)
        if not _authorized(state):
            return _detail(401, "Invalid Key authorization header")
        if job is None or job["status"] != "COMPLETED":
            return _detail(400, "Request is still in progress")
        return _result(state, job)

    @app.put("/<owner>/<app_name>/requests/<request_id>/cancel")
    def cancel(owner, app_name, request_id):
        state.record()
        if (answer := scripted(state, "cancel")) is not None:
            return answer
        job = find(owner, app_name, request_id)
        if job is None or not _authorized(state):
            return _detail(404, "Request not found")
        if job["status"] == "COMPLETED":
            return jsonify({"status": "ALREADY_COMPLETED"}), 400
        job["canceled"] = True
        return jsonify({"status": "CANCELLATION_REQUESTED"}), 202

    @app.get("/files/<name>")
    def file(name):
        return scripted(state, "file") or serve_file(state, name)

    @app.get("/.well-known/jwks.json")
    def jwks():
        """fal's published keys: its signing key among others."""
        state.record()
        # A second, unrelated key first: receivers must try every published key.
        return jsonify({"keys": [_jwk(Ed25519PrivateKey.generate(), "old"),
                                 {"kty": "RSA", "kid": "not-ed25519", "n": "AQAB", "e": "AQAB"},
                                 _jwk(signing_key(state), "current")]})

    @app.post("/<path:endpoint_id>")
    def submit(endpoint_id):
        state.record()
        if (answer := scripted(state, "submit")) is not None:
            return answer
        if not _authorized(state):
            return _detail(401, "Invalid Key authorization header")
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return _detail(422, [{"loc": ["body"], "msg": "Input should be a valid dictionary",
                                  "type": "dict_type"}])
        if not isinstance(body.get("prompt"), str):
            return _detail(422, [{"loc": ["body", "prompt"], "msg": "Field required",
                                  "type": "missing"}])
        parts = endpoint_id.split("/")
        request_id = secrets.token_hex(8)
        with state.lock:
            state.data.setdefault("requests", {})[request_id] = {
                "endpoint": endpoint_id, "owner_app": "/".join(parts[:2]), "input": body,
                "status": "IN_QUEUE", "polls": 0, "base": request.host_url.rstrip("/"),
                "webhook": request.args.get("fal_webhook")}
            state.data["submits"] = state.data.get("submits", 0) + 1
        if state.data.get("finish_after") is not None:
            later(state.data["finish_after"], finish, state, request_id)
        return jsonify({**_urls(parts[0], parts[1], request_id), "queue_position": 0,
                        "gateway_request_id": request_id})

    return app
