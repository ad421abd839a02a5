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
Routes for `state.script` ("submit", "status", "result", "cancel", "file"): see
tests/fakes/replicate.py `scripted`.
"""
from __future__ import annotations

import secrets

from flask import Flask, Response, jsonify, request

from tests.fakes.replicate import add_file, scripted, serve_file
from tests.fakes.server import FakeState


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
    """Each status GET moves the request along: IN_QUEUE → IN_PROGRESS → COMPLETED."""
    if job["status"] == "COMPLETED" or job.get("canceled"):
        return
    job["polls"] += 1
    if state.data.get("outcome") == "never" or job["polls"] < state.data.get("polls_needed", 2):
        job["status"] = "IN_QUEUE" if job["polls"] == 1 else "IN_PROGRESS"
    else:
        job["status"] = "COMPLETED"


def _result(state: FakeState, job: dict) -> Response:
    """The model output, or the model's 422 validation error."""
    if state.data.get("outcome") == "fail":
        return _detail(422, [{"loc": ["body", "prompt"], "msg": "The prompt was flagged.",
                              "type": "content_policy_violation"}])
    if "result" not in job:
        url = add_file(state, state.data.get("kind", "image"))
        if state.data.get("kind") == "video":
            job["result"] = {"video": {"url": url, "content_type": "video/mp4",
                                       "file_name": "out.mp4", "file_size": 1000}}
        else:
            job["result"] = {"images": [{"url": url, "content_type": "image/png",
                                         "width": 8, "height": 8}],
                             "seed": 42, "has_nsfw_concepts": [False]}
    return jsonify(job["result"])


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
                "status": "IN_QUEUE", "polls": 0}
            state.data["submits"] = state.data.get("submits", 0) + 1
        return jsonify({**_urls(parts[0], parts[1], request_id), "queue_position": 0})

    return app
