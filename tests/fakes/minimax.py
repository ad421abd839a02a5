"""A fake MiniMax Hailuo video API: create, query, files/retrieve.

Like the real one it answers business errors as HTTP 200 with `base_resp.status_code != 0`:
a missing or wrong Bearer key gets 1004, an invalid body 2013 (unknown model, a bad
`first_frame_image`, the duration / resolution matrix, 2.3-Fast without a first frame).

State knobs (`state.data`):
  key            the accepted API key (default "mm-test")
  polls_needed   queries a task needs before `Success` (default 2; earlier ones walk
                 Preparing → Queueing → Processing)
  outcome        "succeed" | "fail" | "sensitive" (query answers 1027) | "never" (default "succeed")
Routes for `state.script` (see tests/fakes/replicate.py `answer`): "create", "query",
"retrieve", "file". Download URLs are served by the fake and expire after one download;
`/refs/<name>` serves reference images. `state.data["submits"]` counts created tasks.
"""
from __future__ import annotations

import base64
import binascii
import re
import secrets
import time

from flask import Flask, Response, jsonify, request

from tests.fakes.replicate import add_file, scripted, serve_file, tiny_png
from tests.fakes.server import FakeState

KEY = "mm-test"
T2V = {"MiniMax-Hailuo-2.3", "MiniMax-Hailuo-02", "T2V-01-Director", "T2V-01"}
I2V = {"MiniMax-Hailuo-2.3", "MiniMax-Hailuo-2.3-Fast", "MiniMax-Hailuo-02", "I2V-01-Director",
       "I2V-01-live", "I2V-01"}
HAILUO = {"MiniMax-Hailuo-2.3", "MiniMax-Hailuo-2.3-Fast", "MiniMax-Hailuo-02"}
DATA_URL = re.compile(r"^data:image/(jpeg|jpg|png|webp);base64,([A-Za-z0-9+/=]+)$")
WALK = ("Preparing", "Queueing", "Processing")
RESOLUTIONS = ("512P", "720P", "768P", "1080P")


def base_resp(status_code: int = 0, status_msg: str = "success", **fields) -> Response:
    """An HTTP 200 answer with MiniMax's `base_resp` (errors too, as the real API does)."""
    return jsonify({**fields, "base_resp": {"status_code": status_code, "status_msg": status_msg}})


def _authorized(state: FakeState) -> bool:
    return request.headers.get("Authorization") == f"Bearer {state.data.get('key', KEY)}"


def _frame_problem(value) -> str | None:
    if not isinstance(value, str):
        return "first_frame_image must be a string"
    if value.startswith(("http://", "https://")):
        return None
    match = DATA_URL.match(value)
    if not match:
        return "first_frame_image must be a URL or a data:image/...;base64 URL"
    try:
        base64.b64decode(match.group(2), validate=True)
    except (binascii.Error, ValueError):
        return "first_frame_image is not valid base64"
    return None


def body_problem(body) -> str | None:
    """Why a create body is invalid (status_code 2013), or None."""
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return "invalid params: model is required"
    model, frame = body["model"], body.get("first_frame_image")
    if model not in (I2V if frame else T2V):
        return f"invalid params: model {model} does not support this mode"
    if frame is None and not body.get("prompt"):
        return "invalid params: prompt is required for text-to-video"
    if frame is not None and (problem := _frame_problem(frame)):
        return f"invalid params: {problem}"
    duration, resolution = body.get("duration", 6), body.get("resolution", "768P")
    if duration not in (6, 10) or (model not in HAILUO and duration != 6):
        return f"invalid params: duration {duration!r}"
    if resolution not in RESOLUTIONS or (resolution, duration) == ("1080P", 10):
        return f"invalid params: resolution {resolution!r} with duration {duration}"
    return None


def create(state: FakeState) -> Response:
    """`POST /v1/video_generation`."""
    state.record()
    if (answer := scripted(state, "create")) is not None:
        return answer
    if not _authorized(state):
        return base_resp(1004, "authorized error, please check your api key")
    if (problem := body_problem(request.get_json(silent=True))) is not None:
        return base_resp(2013, problem)
    task_id = str(secrets.randbelow(10 ** 15))
    with state.lock:
        state.data.setdefault("tasks", {})[task_id] = {"status": "Preparing", "polls": 0}
        state.data["submits"] = state.data.get("submits", 0) + 1
    return base_resp(task_id=task_id)


def _advance(state: FakeState, task: dict) -> None:
    if task["status"] in ("Success", "Fail"):
        return
    task["polls"] += 1
    outcome = state.data.get("outcome", "succeed")
    if outcome == "never" or task["polls"] < state.data.get("polls_needed", 2):
        task["status"] = WALK[min(task["polls"], len(WALK) - 1)]
    elif outcome in ("fail", "sensitive"):
        task["status"] = "Fail"
        task["sensitive"] = outcome == "sensitive"
    else:
        task["status"], task["file_id"] = "Success", str(secrets.randbelow(10 ** 15))
        with state.lock:
            state.data.setdefault("files_by_id", {})[task["file_id"]] = add_file(state, "video")


def query(state: FakeState) -> Response:
    """`GET /v1/query/video_generation?task_id=…`."""
    state.record()
    if (answer := scripted(state, "query")) is not None:
        return answer
    if not _authorized(state):
        return base_resp(1004, "authorized error, please check your api key")
    task_id = request.args.get("task_id", "")
    task = state.data.get("tasks", {}).get(task_id)
    if task is None:
        return base_resp(2013, f"invalid params: task {task_id} not found")
    _advance(state, task)
    if task.get("sensitive"):
        return base_resp(1027, "output video sensitive", task_id=task_id, status="Fail")
    fields = {"task_id": task_id, "status": task["status"]}
    if task["status"] == "Success":
        fields.update(file_id=task["file_id"], video_width=64, video_height=64)
    return base_resp(**fields)


def retrieve(state: FakeState) -> Response:
    """`GET /v1/files/retrieve?file_id=…` (a `GroupId` is accepted and ignored)."""
    state.record()
    if (answer := scripted(state, "retrieve")) is not None:
        return answer
    if not _authorized(state):
        return base_resp(1004, "authorized error, please check your api key")
    file_id = request.args.get("file_id", "")
    url = state.data.get("files_by_id", {}).get(file_id)
    if url is None:
        return base_resp(2013, f"invalid params: file {file_id} not found")
    return base_resp(file={"file_id": int(file_id), "bytes": 4096, "created_at": int(time.time()),
                           "filename": "output_aigc.mp4", "purpose": "video_generation",
                           "download_url": url})


def make_app(state: FakeState) -> Flask:
    """The fake MiniMax server."""
    app = Flask("fake_minimax")
    app.add_url_rule("/v1/video_generation", "create", lambda: create(state), methods=["POST"])
    app.add_url_rule("/v1/query/video_generation", "query", lambda: query(state), methods=["GET"])
    app.add_url_rule("/v1/files/retrieve", "retrieve", lambda: retrieve(state), methods=["GET"])

    @app.get("/files/<name>")
    def file(name):
        """An output file, once (then 404, like an expired provider URL)."""
        return scripted(state, "file") or serve_file(state, name)

    @app.get("/refs/<name>")
    def ref(name):
        """A reference image a run may name in `image_urls` (served every time)."""
        return Response(tiny_png((30, 200, 90)), content_type="image/png")

    return app
