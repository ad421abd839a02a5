"""A fake OpenAI Images API on 127.0.0.1.

`POST /v1/images/generations` (JSON) and `POST /v1/images/edits` (multipart or JSON).
It checks the bearer key and the body the way the real API does, answering with OpenAI's
own `{"error": {"message", "type", "param", "code"}}` body, so a wrong translation fails a
test. Answers carry real PNGs as `b64_json`.

Scripting (route "images", consumed one per request, for both endpoints):
    state.script["images"].append(error(429, "Rate limit reached", "requests", "rate_limit_exceeded",
                                        headers={"retry-after-ms": "800"}))
    state.script["images"].append(("sleep", 5))      # then answer normally
    state.script["images"].append(("broken",))       # 200 with a body that is not JSON
State: `state.data["api_key"]` (default "sk-test"), `state.data["edits"]` (the image bytes each
edit received), `state.data["times"]` (monotonic time of each images request).

Like the real API, edits take PNG, JPEG and WebP only: a multipart part of another declared
type, or whose bytes are not what its type says, is a 400 (a call we would have paid for).
"""
from __future__ import annotations

import base64
import io
import re
import secrets
import time

from flask import Flask, Response, jsonify, request
from PIL import Image

from .server import FakeState

MODELS = {"gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5", "gpt-image-2",
          "gpt-image-2-2026-04-21", "chatgpt-image-latest", "dall-e-2", "dall-e-3"}
CLASSIC_SIZES = {"auto", "1024x1024", "1536x1024", "1024x1536"}
QUALITIES = {"auto", "low", "medium", "high"}
GENERATION_FIELDS = {"prompt", "model", "n", "size", "quality", "background", "output_format",
                     "output_compression", "moderation", "stream", "partial_images", "user",
                     "response_format", "style"}
EDIT_FIELDS = GENERATION_FIELDS - {"style"} | {"image", "image[]", "images", "mask",
                                               "input_fidelity"}
#: The edit image types the API takes, and the leading bytes each must have.
EDIT_TYPES = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff",
              "image/webp": b"RIFF"}


def error(status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
          param: str | None = None, headers: dict | None = None) -> tuple:
    """A scripted OpenAI error answer."""
    return ("error", status, {"error": {"message": message, "type": type_, "param": param,
                                        "code": code}}, headers or {})


def moderation_blocked() -> tuple:
    """The scripted safety refusal (400 `moderation_blocked`)."""
    return error(400, "Your request was rejected by the safety system.",
                 "image_generation_user_error", "moderation_blocked")


def png_for(size: str, seed: str) -> bytes:
    """A real PNG, 1/32 of the requested size, coloured from `seed`."""
    width, height = (int(side) for side in size.split("x")) if "x" in size else (1024, 1024)
    colour = tuple(seed.encode()[:3].ljust(3, b"x"))
    buffer = io.BytesIO()
    Image.new("RGB", (max(width // 32, 1), max(height // 32, 1)), colour).save(buffer, "PNG")
    return buffer.getvalue()


def make_app(state: FakeState) -> Flask:
    """The fake OpenAI app; see the module docstring for scripting."""
    app = Flask("fake_openai")
    state.data.setdefault("api_key", "sk-test")
    state.data.setdefault("edits", [])
    state.data.setdefault("times", [])

    @app.post("/v1/images/generations")
    def generations():
        """`POST /v1/images/generations` (JSON)."""
        state.record()
        body = request.get_json(silent=True)
        return _answer(state, lambda: _check_generation(body), body)

    @app.post("/v1/images/edits")
    def edits():
        """`POST /v1/images/edits` (multipart, or JSON with data: URLs)."""
        state.record()
        fields, images = _edit_request()
        return _answer(state, lambda: _check_edit(state, fields, images), fields)

    return app


def _answer(state: FakeState, check, fields) -> Response:
    """Auth, then the scripted answer (if any), then validation, then a generated image."""
    state.data["times"].append(time.monotonic())
    if request.headers.get("Authorization") != f"Bearer {state.data['api_key']}":
        return _error_response(error(401, "Incorrect API key provided.", code="invalid_api_key"))
    scripted = state.next_scripted("images")
    if scripted and scripted[0] == "error":
        return _error_response(scripted)
    if scripted and scripted[0] == "broken":
        return Response('{"created": 17138336', status=200, mimetype="application/json")
    if scripted and scripted[0] == "sleep":
        time.sleep(scripted[1])
    problem = check()
    if problem:
        return _error_response(problem)
    size = str(fields.get("size") or "auto")
    data = [{"b64_json": base64.b64encode(png_for(size, str(fields["prompt"]))).decode()}
            for _ in range(int(fields.get("n") or 1))]
    response = jsonify({"created": int(time.time()), "data": data, "output_format": "png",
                        "size": size, "quality": fields.get("quality", "auto"),
                        "background": "opaque"})
    response.headers["x-request-id"] = "req_" + secrets.token_hex(8)
    return response


def _error_response(scripted: tuple) -> Response:
    _kind, status, body, headers = scripted
    response = jsonify(body)
    response.status_code = status
    response.headers["x-request-id"] = "req_" + secrets.token_hex(8)
    for name, value in headers.items():
        response.headers[name] = value
    return response


def _edit_request() -> tuple[dict, list[tuple[bytes, str]]]:
    """An edit's fields and (image bytes, declared type), from multipart or JSON (data: URLs)."""
    if request.is_json:
        body = request.get_json(silent=True) or {}
        images = [(base64.b64decode(url.split(",", 1)[-1]), url[5:].split(";")[0])
                  for item in body.get("images") or [] if isinstance(item, dict)
                  for url in [str(item.get("image_url", ""))]]
        return body, images
    images = []
    for key in ("image", "image[]"):
        for stored in request.files.getlist(key):
            stored.stream.seek(0)  # FakeState.record() has read it already
            images.append((stored.read(), stored.mimetype))
    return {key: request.form.get(key) for key in request.form}, images


def _check_common(body, allowed: set) -> tuple | None:
    """Checks shared by both endpoints; an error answer or None."""
    if not isinstance(body, dict):
        return error(400, "We could not parse the JSON body of your request.")
    unknown = sorted(set(body) - allowed)
    if unknown:
        return error(400, f"Unknown parameter: '{unknown[0]}'.", code="unknown_parameter",
                     param=unknown[0])
    if not isinstance(body.get("prompt"), str) or not body["prompt"].strip():
        return error(400, "Missing required parameter: 'prompt'.", code="missing_required_parameter",
                     param="prompt")
    model = body.get("model")
    if model not in MODELS:
        # Without `model` the API would silently use dall-e-2: the adapter must always send it.
        return error(400, f"Invalid value for 'model': {model!r}.", code="invalid_value", param="model")
    if "response_format" in body and str(model).startswith("gpt-image"):
        return error(400, "Unknown parameter: 'response_format'.", code="unknown_parameter",
                     param="response_format")
    if str(body.get("n", 1)) not in {str(n) for n in range(1, 11)}:
        return error(400, "Invalid value for 'n'.", code="invalid_value", param="n")
    if body.get("quality", "auto") not in QUALITIES:
        return error(400, f"Invalid value for 'quality': {body['quality']!r}.", code="invalid_value",
                     param="quality")
    return _check_size(str(model), str(body.get("size", "auto")))


def _check_size(model: str, size: str) -> tuple | None:
    """The size rules: three fixed sizes, or free WxH on gpt-image-2 within its limits."""
    if size in CLASSIC_SIZES:
        return None
    match = re.fullmatch(r"(\d+)x(\d+)", size)
    if model.startswith("gpt-image-2") and match:
        width, height = int(match[1]), int(match[2])
        valid = (width % 16 == 0 and height % 16 == 0 and max(width, height) <= 3840
                 and min(width, height) <= 2160 and max(width, height) <= 3 * min(width, height))
        if valid:
            return None
    return error(400, f"Invalid value: '{size}'. Supported values are: 'auto', '1024x1024', "
                 "'1536x1024', and '1024x1536'.", code="invalid_value", param="size")


def _check_generation(body) -> tuple | None:
    return _check_common(body, GENERATION_FIELDS)


def _check_edit(state: FakeState, fields: dict, images: list[tuple[bytes, str]]) -> tuple | None:
    problem = _check_common(fields, EDIT_FIELDS)
    if problem:
        return problem
    if not 1 <= len(images) <= 16:
        return error(400, "Missing required parameter: 'image'.", code="missing_required_parameter",
                     param="image")
    for data, declared in images:
        if declared not in EDIT_TYPES:
            return error(400, f"Invalid file 'image[]': unsupported mimetype ('{declared}'). "
                         "Supported file formats are 'image/jpeg', 'image/png', and 'image/webp'.",
                         code="unsupported_file_mimetype", param="image")
        if not data.startswith(EDIT_TYPES[declared]):
            return error(400, "Invalid image file: use png, webp or jpg.",
                         code="invalid_image_format", param="image")
    state.data["edits"].append([data for data, _declared in images])
    return None
