"""A fake Kling AI video API: text2video / image2video tasks.

It verifies the JWT like Kling does (HS256 with the secret key, `iss` == access key, `nbf`
and `exp`), answering 401 with codes 1001 (no header), 1002 (bad token or signature), 1003
(not yet valid) and 1004 (expired); it checks the body (model_name, mode, the string
`duration`, aspect_ratio, raw-base64 `image` without a `data:` prefix) and answers in Kling's
`{"code", "message", "request_id", "data"}` envelope. Task ids live in one namespace per
family: querying the wrong family gives 404 / 1203.

State knobs (`state.data`):
  access_key, secret_key   the accepted credentials (default "ak-test" / "sk-test")
  polls_needed   GETs a task needs before it ends (default 1)
  outcome        "succeed" | "fail" | "never" (stays "processing") (default "succeed")
  fail_msg       `task_status_msg` for outcome "fail"
Routes for `state.script` (see tests/fakes/replicate.py `answer`): "create", "get", "file".
Output videos are served by the fake and expire after one download; `/refs/<name>` serves
reference images. `state.data["submits"]` counts created tasks.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time

from flask import Flask, Response, jsonify, request

from tests.fakes.replicate import add_file, scripted, serve_file, tiny_png
from tests.fakes.server import FakeState

ACCESS_KEY = "ak-test"
SECRET_KEY = "sk-test"
MODELS = {"kling-v1", "kling-v1-6", "kling-v2-master", "kling-v2-1-master", "kling-v2-5-turbo",
          "kling-v2-6", "kling-v3"}
#: kling-v3 takes 3–15 s and three modes; older models "5"/"10" and std/pro.
V3_DURATIONS = {str(n) for n in range(3, 16)}
ASPECT_RATIOS = {"16:9", "9:16", "1:1"}
FAMILIES = ("text2video", "image2video")


def envelope(status: int, code: int, message: str, data=None) -> Response:
    """Kling's answer envelope; errors leave out `data`."""
    body = {"code": code, "message": message, "request_id": secrets.token_hex(8)}
    if data is not None:
        body["data"] = data
    response = jsonify(body)
    response.status_code = status
    return response


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def jwt_problem(state: FakeState) -> tuple[int, str] | None:
    """(code, message) when the Authorization header is not a valid token for our keys."""
    header = request.headers.get("Authorization", "")
    if not header:
        return 1001, "Authorization is empty"
    if not header.startswith("Bearer ") or header.count(".") != 2:
        return 1002, "Authorization is invalid"
    token = header[len("Bearer "):]
    signing_input, _, signature = token.rpartition(".")
    secret = state.data.get("secret_key", SECRET_KEY).encode()
    expected = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    try:
        head, claims = (json.loads(_unb64(part)) for part in signing_input.split("."))
        valid = hmac.compare_digest(_unb64(signature), expected)
    except (ValueError, binascii.Error):
        return 1002, "Authorization is invalid"
    if not valid or head != {"alg": "HS256", "typ": "JWT"}:
        return 1002, "Authorization is invalid (signature)"
    if claims.get("iss") != state.data.get("access_key", ACCESS_KEY):
        return 1002, "Authorization is invalid (unknown access key)"
    now = time.time()
    if not isinstance(claims.get("nbf"), int) or claims["nbf"] > now:
        return 1003, "Authorization is not yet valid"
    exp = claims.get("exp")
    if not isinstance(exp, int) or exp <= now or exp > now + 86400:
        return 1004, "Authorization is expired"
    return None


def _check_frame(value) -> str | None:
    if value.startswith("data:"):
        return "image must be a URL or raw base64 without the data: prefix"
    if value.startswith(("http://", "https://")):
        return None
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return "image is neither a URL nor valid base64"
    return None if data[:8] == b"\x89PNG\r\n\x1a\n" or data[:3] == b"\xff\xd8\xff" else \
        "image must be jpg, jpeg or png"


def body_problem(family: str, body) -> tuple[int, int, str] | None:
    """(http status, code, message) for an invalid create body, or None."""
    if not isinstance(body, dict):
        return 400, 1200, "invalid request parameters"
    if body.get("model_name") not in MODELS:
        return 404, 1203, f"model {body.get('model_name')!r} does not exist"
    if not body.get("prompt"):
        return 400, 1201, "prompt is required"
    modes = {"std", "pro", "4k"} if body["model_name"] == "kling-v3" else {"std", "pro"}
    durations = V3_DURATIONS if body["model_name"] == "kling-v3" else {"5", "10"}
    if body.get("mode", "std") not in modes:
        return 400, 1201, f"mode {body.get('mode')!r} is invalid"
    if body.get("duration", "5") not in durations:
        return 400, 1201, f"duration {body.get('duration')!r} is invalid (a string of seconds)"
    if family == "text2video" and body.get("aspect_ratio", "16:9") not in ASPECT_RATIOS:
        return 400, 1201, f"aspect_ratio {body.get('aspect_ratio')!r} is invalid"
    if family == "image2video":
        frames = [body[key] for key in ("image", "image_tail") if body.get(key)]
        if not body.get("image") and not body.get("image_tail"):
            return 400, 1201, "image or image_tail is required"
        for frame in frames:
            if (problem := _check_frame(str(frame))) is not None:
                return 400, 1201, problem
    return None


def create(state: FakeState, family: str) -> Response:
    """`POST /v1/videos/{family}`."""
    state.record()
    if (answer := scripted(state, "create")) is not None:
        return answer
    if (problem := jwt_problem(state)) is not None:
        return envelope(401, *problem)
    if (problem := body_problem(family, request.get_json(silent=True))) is not None:
        return envelope(*problem)
    now_ms = int(time.time() * 1000)
    task = {"task_id": str(secrets.randbelow(10 ** 18)), "task_status": "submitted",
            "task_status_msg": "", "task_info": {}, "created_at": now_ms, "updated_at": now_ms,
            "polls": 0}
    with state.lock:
        state.data.setdefault(family, {})[task["task_id"]] = task
        state.data["submits"] = state.data.get("submits", 0) + 1
    return envelope(200, 0, "SUCCEED", {k: v for k, v in task.items() if k in (
        "task_id", "task_status", "task_info", "created_at", "updated_at")})


def _advance(state: FakeState, task: dict) -> None:
    """Each GET moves a live task along; it ends after `polls_needed` GETs."""
    if task["task_status"] not in ("submitted", "processing"):
        return
    task["polls"] += 1
    outcome = state.data.get("outcome", "succeed")
    if outcome == "never" or task["polls"] < state.data.get("polls_needed", 1):
        task["task_status"] = "processing"
    elif outcome == "fail":
        task["task_status"] = "failed"
        task["task_status_msg"] = state.data.get("fail_msg", "internal error")
    else:
        task["task_status"] = "succeed"
        task["task_result"] = {"videos": [{"id": secrets.token_hex(6),
                                           "url": add_file(state, "video"), "duration": "5.0"}]}
    task["updated_at"] = int(time.time() * 1000)


def query(state: FakeState, family: str, task_id: str) -> Response:
    """`GET /v1/videos/{family}/{task_id}`."""
    state.record()
    if (answer := scripted(state, "get")) is not None:
        return answer
    if (problem := jwt_problem(state)) is not None:
        return envelope(401, *problem)
    task = state.data.get(family, {}).get(task_id)
    if task is None:
        return envelope(404, 1203, f"task {task_id} does not exist")
    with state.lock:
        _advance(state, task)
    return envelope(200, 0, "SUCCEED", {k: v for k, v in task.items() if k != "polls"})


def make_app(state: FakeState) -> Flask:
    """The fake Kling server."""
    app = Flask("fake_kling")
    for family in FAMILIES:
        app.add_url_rule(f"/v1/videos/{family}", f"create_{family}",
                         lambda family=family: create(state, family), methods=["POST"])
        app.add_url_rule(f"/v1/videos/{family}/<task_id>", f"query_{family}",
                         lambda task_id, family=family: query(state, family, task_id),
                         methods=["GET"])

    @app.get("/files/<name>")
    def file(name):
        """An output file, once (then 404, like an expired provider URL)."""
        return scripted(state, "file") or serve_file(state, name)

    @app.get("/refs/<name>")
    def ref(name):
        """A reference image a run may name in `image_urls` (served every time)."""
        return Response(tiny_png((240, 200, 20)), content_type="image/png")

    return app
