"""A fake Replicate predictions API, plus the media and
scripting helpers the fal and upstream-Runbase fakes share.

State knobs (`state.data`):
  token          the accepted Bearer token (default "r8-test")
  polls_needed   GETs a prediction needs before it ends (default 1)
  outcome        "succeed" | "fail" | "never" (stays processing) (default "succeed")
  error          the failure message for outcome "fail"
  output_shape   "list" | "string" | "nested" (default "list")
  kind           "image" | "video" (default "image")
Routes for `state.script`: "create", "get", "cancel", "file". A scripted answer is a dict:
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

from flask import Flask, Response, jsonify, request
from PIL import Image

from runbase_web.providers.local_media import sketch_mp4
from tests.fakes.server import FakeState

_counter = itertools.count(1)
#: Guards the files of every fake (state.lock is often held by the caller already).
_FILES_LOCK = threading.Lock()


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


def add_file(state: FakeState, kind: str) -> str:
    """Keep a new output file on the fake; returns its absolute URL on this server."""
    data, ext = (tiny_mp4(), "mp4") if kind == "video" else (tiny_png(), "png")
    name = f"out-{next(_counter)}-{secrets.token_hex(4)}.{ext}"
    with _FILES_LOCK:
        state.data.setdefault("files", {})[name] = data
    return f"{request.host_url.rstrip('/')}/files/{name}"


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


# --- Replicate ---------------------------------------------------------------------------


def _problem(status: int, title: str, detail: str) -> Response:
    """Replicate's problem-details error body."""
    response = jsonify({"title": title, "detail": detail, "status": status})
    response.status_code = status
    return response


def _authorized(state: FakeState) -> bool:
    return request.headers.get("Authorization") == f"Bearer {state.data.get('token', 'r8-test')}"


def _output(state: FakeState):
    """The prediction's output in the configured shape."""
    url = add_file(state, state.data.get("kind", "image"))
    shape = state.data.get("output_shape", "list")
    if shape == "string":
        return url
    if shape == "nested":
        return [{"image": url, "meta": {"seed": 1}}]
    return [url]


def _advance(state: FakeState, prediction: dict) -> None:
    """One GET moves a running prediction along; it ends after `polls_needed` GETs."""
    if prediction["status"] not in ("starting", "processing"):
        return
    prediction["polls"] += 1
    outcome = state.data.get("outcome", "succeed")
    if outcome == "never" or prediction["polls"] < state.data.get("polls_needed", 1):
        prediction["status"] = "processing"
    elif outcome == "fail":
        prediction["status"] = "failed"
        prediction["error"] = state.data.get("error", "CUDA out of memory")
    else:
        prediction["status"], prediction["output"] = "succeeded", _output(state)


def _public(prediction: dict) -> dict:
    base = request.host_url.rstrip("/")
    return {key: value for key, value in prediction.items() if key != "polls"} | {
        "urls": {"get": f"{base}/v1/predictions/{prediction['id']}",
                 "cancel": f"{base}/v1/predictions/{prediction['id']}/cancel"}}


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
        prediction = {"id": secrets.token_hex(13), "model": model or "owner/name",
                      "version": body.get("version", "hidden"), "input": body["input"],
                      "output": None, "error": None, "status": "starting", "logs": "",
                      "data_removed": False, "polls": 0}
        with state.lock:
            state.data.setdefault("predictions", {})[prediction["id"]] = prediction
            state.data["submits"] = state.data.get("submits", 0) + 1
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

    @app.get("/files/<name>")
    def file(name):
        return scripted(state, "file") or serve_file(state, name)

    return app
