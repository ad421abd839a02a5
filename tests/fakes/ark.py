"""A fake BytePlus ModelArk: Seedream `POST /api/v3/images/generations`
and Seedance tasks `/api/v3/contents/generations/tasks`, as ModelArk's API documents them.

It checks the Bearer key and the body (model ids, Seedream's size rules per model, content
items, Seedance's ratio / resolution / duration / generate_audio per model), answering with
Ark's `{"error": {"code", "message", "param", "type"}}` envelope, so a wrong translation fails.

State knobs (`state.data`):
  key            the accepted API key (default "ark-test")
  polls_needed   GETs a task needs before it ends (default 1; the first GET says "running")
  outcome        "succeed" | "fail" | "expired" | "never" (stays "running") |
                 "queued" (stays "queued") (default "succeed")
  task_error     the task's `error` object for outcome "fail"
Routes for `state.script` (see tests/fakes/replicate.py `answer`): "images", "create",
"get", "delete", "file". Outputs are served by the fake and expire after one download;
`/refs/<name>` serves reference images (always). `state.data["submits"]` counts created tasks.
"""
from __future__ import annotations

import base64
import re
import secrets
import time

from flask import Flask, Response, jsonify, request

from tests.fakes.replicate import add_file, scripted, serve_file, tiny_png
from tests.fakes.server import FakeState

KEY = "ark-test"

#: Seedream ids → (tier values, minimum pixels) per ModelArk's documentation (max 4096×4096 for all).
SEEDREAM = {
    "seedream-4-0-250828": ({"1K", "2K", "4K"}, 921_600),
    "seedream-4-5-251128": ({"2K", "4K"}, 3_686_400),
    "seedream-5-0-260128": ({"2K", "3K", "4K"}, 3_686_400),
    "seedream-5-0-lite-260128": ({"2K", "3K", "4K"}, 3_686_400),
}
MAX_PIXELS = 4096 * 4096

#: Seedance ids → what each accepts: resolutions, durations, generate_audio, images (t2v/i2v).
SEEDANCE = {
    "seedance-1-0-lite-t2v-250428": {"res": {"480p", "720p", "1080p"}, "dur": range(2, 13),
                                     "audio": False, "images": False},
    "seedance-1-0-lite-i2v-250428": {"res": {"480p", "720p", "1080p"}, "dur": range(2, 13),
                                     "audio": False, "images": True},
    "seedance-1-0-pro-250528": {"res": {"480p", "720p", "1080p"}, "dur": range(2, 13),
                                "audio": False, "images": None},
    "seedance-1-5-pro-251215": {"res": {"480p", "720p", "1080p"}, "dur": range(4, 13),
                                "audio": True, "images": None},
    "dreamina-seedance-2-0-260128": {"res": {"480p", "720p", "1080p"}, "dur": range(4, 16),
                                     "audio": True, "images": None},
    "dreamina-seedance-2-0-fast-260128": {"res": {"480p", "720p"}, "dur": range(4, 16),
                                          "audio": True, "images": None},
}
RATIOS = {"16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "adaptive"}
DATA_URI = re.compile(r"^data:image/(png|jpeg|webp|bmp|tiff|gif);base64,[A-Za-z0-9+/=]+$")
ROLES = {"first_frame", "last_frame", "reference_image"}


def error(status: int, code: str, message: str, param: str | None = None) -> Response:
    """Ark's error envelope (the message ends with a request id, as the real one does)."""
    kind = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
            429: "TooManyRequests"}.get(status, "InternalServiceError")
    body = {"error": {"code": code, "message": f"{message} Request ID: {secrets.token_hex(8)}",
                      "param": param or "", "type": kind}}
    response = jsonify(body)
    response.status_code = status
    return response


def _authorized(state: FakeState) -> bool:
    return request.headers.get("Authorization") == f"Bearer {state.data.get('key', KEY)}"


def _check_size(model: str, size) -> str | None:
    """Why `size` is invalid for this Seedream model, or None."""
    tiers, min_pixels = SEEDREAM[model]
    if size in tiers:
        return None
    match = re.fullmatch(r"(\d+)x(\d+)", size or "")
    if not match:
        return f"size {size!r} is neither a tier of this model nor WxH"
    width, height = int(match.group(1)), int(match.group(2))
    if not min_pixels <= width * height <= MAX_PIXELS:
        return f"size {size} has {width * height} pixels, outside [{min_pixels}, {MAX_PIXELS}]"
    if not 1 / 16 <= width / height <= 16:
        return f"size {size} has a ratio outside [1/16, 16]"
    return None


def _check_image(body: dict) -> str | None:
    images = body.get("image", [])
    images = [images] if isinstance(images, str) else images
    if not isinstance(images, list) or len(images) > 14:
        return "image must be a string or a list of at most 14 strings"
    for item in images:
        if not (isinstance(item, str) and (item.startswith("https://") or DATA_URI.match(item))):
            return "each image must be an https URL or a lower-case data:image/<fmt>;base64 URI"
    return None


def _image_items(state: FakeState, body: dict) -> list[dict]:
    size = body.get("size", "2K")
    size = size if "x" in size else "2048x2048"
    if body.get("response_format", "url") == "b64_json":
        return [{"b64_json": base64.b64encode(tiny_png()).decode(), "size": size}]
    url = add_file(state, "image") + "?X-Tos-Algorithm=TOS4-HMAC-SHA256&X-Tos-Expires=86400"
    return [{"url": url, "size": size}]


def images(state: FakeState) -> Response:
    """`POST /api/v3/images/generations`: one image (or a scripted answer)."""
    state.record()
    if (answer := scripted(state, "images")) is not None:
        return answer
    if not _authorized(state):
        return error(401, "AuthenticationError", "The API key is missing or invalid.")
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not body.get("prompt"):
        return error(400, "MissingParameter", "The request is missing the prompt.", "prompt")
    if body.get("model") not in SEEDREAM:
        return error(404, "InvalidEndpointOrModel.NotFound",
                     f"The model or endpoint {body.get('model')} does not exist.")
    problem = _check_size(body["model"], body.get("size", "2K")) or _check_image(body)
    if problem:
        return error(400, "InvalidParameter", problem, "size" if "size" in problem else "image")
    if "n" in body:
        return error(400, "InvalidParameter", "n is not a parameter of this model.", "n")
    items = _image_items(state, body)
    return jsonify({"model": body["model"], "created": int(time.time()), "data": items,
                    "usage": {"generated_images": 1, "output_tokens": 16384,
                              "total_tokens": 16384}})


def _check_content(content, model: dict) -> str | None:
    """Why a Seedance `content` array is invalid for this model, or None."""
    if not isinstance(content, list) or not content:
        return "content must be a non-empty array"
    texts = [item for item in content if isinstance(item, dict) and item.get("type") == "text"]
    frames = [item for item in content
              if isinstance(item, dict) and item.get("type") == "image_url"]
    if len(texts) != 1 or not texts[0].get("text") or len(texts) + len(frames) != len(content):
        return "content needs exactly one non-empty text item, and image_url items"
    for frame in frames:
        url = (frame.get("image_url") or {}).get("url", "")
        url_ok = url.startswith("https://") or DATA_URI.match(url)
        if not url_ok or frame.get("role", "first_frame") not in ROLES:
            return "image_url items need an https or data: URL and a known role"
    if model["images"] is not None and bool(frames) != model["images"]:
        return "this model id is for " + ("image-to-video" if model["images"] else "text-to-video")
    return None


def _check_task(body: dict) -> tuple[str, str] | None:
    """(param, problem) for an invalid Seedance create body, or None."""
    model = SEEDANCE[body["model"]]
    if (problem := _check_content(body.get("content"), model)) is not None:
        return "content", problem
    if body.get("ratio", "16:9") not in RATIOS:
        return "ratio", f"ratio {body.get('ratio')!r} is not supported"
    if body.get("resolution", "720p") not in model["res"]:
        return "resolution", f"resolution {body.get('resolution')!r} is not supported by this model"
    duration = body.get("duration", 5)
    if not isinstance(duration, int) or isinstance(duration, bool) or duration not in model["dur"]:
        return "duration", f"duration {duration!r} must be an integer the model supports"
    audio = body.get("generate_audio")
    if "generate_audio" in body and not (model["audio"] and isinstance(audio, bool)):
        return "generate_audio", "generate_audio is not supported by this model"
    return None


def create_task(state: FakeState) -> Response:
    """`POST /api/v3/contents/generations/tasks`: a queued task (or a scripted answer)."""
    state.record()
    if (answer := scripted(state, "create")) is not None:
        return answer
    if not _authorized(state):
        return error(401, "AuthenticationError", "The API key is missing or invalid.")
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or body.get("model") not in SEEDANCE:
        return error(404, "InvalidEndpointOrModel.NotFound", "The model does not exist.")
    if (problem := _check_task(body)) is not None:
        return error(400, "InvalidParameter", problem[1], problem[0])
    task = {"id": f"cgt-{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(3)}",
            "model": body["model"], "status": "queued", "error": None, "content": None,
            "created_at": int(time.time()), "polls": 0}
    with state.lock:
        state.data.setdefault("tasks", {})[task["id"]] = task
        state.data["submits"] = state.data.get("submits", 0) + 1
    return jsonify({"id": task["id"]})


def _advance(state: FakeState, task: dict) -> None:
    """Each GET moves a live task on; it ends after `polls_needed` GETs."""
    if task["status"] not in ("queued", "running"):
        return
    task["polls"] += 1
    outcome = state.data.get("outcome", "succeed")
    if outcome == "queued":
        return
    if outcome == "never" or task["polls"] < state.data.get("polls_needed", 1):
        task["status"] = "running"
    elif outcome == "fail":
        task["status"] = "failed"
        task["error"] = state.data.get("task_error", {
            "code": "InternalServiceError", "message": "The service encountered an error."})
    elif outcome == "expired":
        task["status"] = "expired"
    else:
        task["status"], task["content"] = "succeeded", {"video_url": add_file(state, "video")}


def get_task(state: FakeState, task_id: str) -> Response:
    """`GET …/tasks/{id}`."""
    state.record()
    if (answer := scripted(state, "get")) is not None:
        return answer
    if not _authorized(state):
        return error(401, "AuthenticationError", "The API key is missing or invalid.")
    task = state.data.get("tasks", {}).get(task_id)
    if task is None:
        return error(404, "ResourceNotFound", f"The task {task_id} was not found.")
    with state.lock:
        _advance(state, task)
    return jsonify({key: value for key, value in task.items() if key != "polls"}
                   | {"updated_at": int(time.time())})


def delete_task(state: FakeState, task_id: str) -> Response:
    """`DELETE …/tasks/{id}`: cancels a queued task, refuses running/cancelled ones, and
    deletes the record of a finished one (ModelArk's task table)."""
    state.record()
    if (answer := scripted(state, "delete")) is not None:
        return answer
    tasks = state.data.get("tasks", {})
    task = tasks.get(task_id)
    if task is None or not _authorized(state):
        return error(404, "ResourceNotFound", f"The task {task_id} was not found.")
    with state.lock:
        if task["status"] == "queued":
            task["status"] = "cancelled"
        elif task["status"] in ("running", "cancelled"):
            return error(400, "InvalidParameter",
                         f"A task in status {task['status']} cannot be cancelled.", "id")
        else:
            tasks.pop(task_id)
    return Response("", status=200)


def make_app(state: FakeState) -> Flask:
    """The fake ModelArk server (both Seedream and Seedance)."""
    app = Flask("fake_ark")
    app.add_url_rule("/api/v3/images/generations", "images", lambda: images(state),
                     methods=["POST"])
    app.add_url_rule("/api/v3/contents/generations/tasks", "create",
                     lambda: create_task(state), methods=["POST"])
    app.add_url_rule("/api/v3/contents/generations/tasks/<task_id>", "get",
                     lambda task_id: get_task(state, task_id), methods=["GET"])
    app.add_url_rule("/api/v3/contents/generations/tasks/<task_id>", "delete",
                     lambda task_id: delete_task(state, task_id), methods=["DELETE"])

    @app.get("/files/<name>")
    def file(name):
        """An output file, once (then 404, like an expired provider URL)."""
        return scripted(state, "file") or serve_file(state, name)

    @app.get("/refs/<name>")
    def ref(name):
        """A reference image a run may name in `image_urls` (served every time)."""
        return Response(tiny_png((20, 120, 220)), content_type="image/png")

    return app
