"""A fake Gemini API on 127.0.0.1: Nano Banana `generateContent`
and Veo `predictLongRunning` + operations + file download, as Google's API documents them.

It requires `x-goog-api-key` (else 400 INVALID_ARGUMENT with reason API_KEY_INVALID, as the
real API does) and checks body fields, answering with the Google RPC error envelope. Images
are real PNGs in base64 `inlineData`; Gemini 3 models also send a `thought: true` image first,
which the adapter must skip. Videos are real MP4s behind a keyed download URL that redirects
to a one-time storage URL.

Scripting, one answer consumed per request, per route "generate", "predict", "operation",
"download":
    state.script["generate"].append(rate_limited("1s"))
    state.script["generate"].append(error(503, "The model is overloaded.", "UNAVAILABLE"))
    state.script["generate"].append(("sleep", 5))        # then answer normally
    state.script["generate"].append(("broken",))         # 200, not JSON
    state.script["generate"].append(("blocked_prompt",)) # 200, promptFeedback.blockReason
    state.script["generate"].append(("image_safety",))   # 200, finishReason IMAGE_SAFETY, no image
    state.script["generate"].append(("text_only",))      # 200, STOP with only a text part
State: `api_key` ("gm-test"); `done_after` polls before an operation is done (1); `outcome`
of new operations ("success", "rai", "error", "never"); `expire_seconds` of a video file (60);
`video_base` (None: the video URI is on this server; else the URL root to put it on);
`operations` (name → record), `times` (route, monotonic time), `last_image` (final PNG sent).

Image parts are checked like the real API does: an `inlineData` part must be PNG, JPEG, WebP,
HEIC or HEIF, and a Veo frame PNG or JPEG, with bytes that are what the mimeType says;
anything else is 400 INVALID_ARGUMENT (a call we would have paid for).
"""
from __future__ import annotations

import base64
import binascii
import io
import secrets
import threading
import time

from flask import Flask, Response, jsonify, redirect, request
from PIL import Image

from runbase_web.providers.local_media import sketch_mp4

from .server import FakeState

BASE_RATIOS = {"1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"}
#: Image models and the imageConfig values each accepts (None: no imageSize at all).
IMAGE_MODELS = {
    "gemini-2.5-flash-image": (BASE_RATIOS, None),
    "gemini-3-pro-image-preview": (BASE_RATIOS, {"1K", "2K", "4K"}),
    "gemini-3.1-flash-image-preview": (BASE_RATIOS | {"1:4", "4:1", "1:8", "8:1"},
                                       {"512", "1K", "2K", "4K"}),
}
VEO_MODELS = {"veo-3.1-generate-preview", "veo-3.1-fast-generate-preview",
              "veo-3.1-lite-generate-preview"}
MODALITIES = (["IMAGE"], ["TEXT", "IMAGE"])
REQUEST_FIELDS = {"contents", "generationConfig", "safetySettings", "systemInstruction", "tools",
                  "toolConfig", "cachedContent"}
CONFIG_FIELDS = {"responseModalities", "imageConfig", "candidateCount", "temperature", "seed",
                 "topP", "topK", "thinkingConfig", "maxOutputTokens"}
VEO_PARAMETERS = {"aspectRatio", "resolution", "durationSeconds", "negativePrompt",
                  "personGeneration", "sampleCount", "enhancePrompt", "seed"}
VEO_INSTANCE_FIELDS = {"prompt", "image", "lastFrame", "referenceImages", "video"}
#: mimeType → leading bytes, for inline image parts and for Veo's image/lastFrame.
INLINE_TYPES = {"image/png": b"\x89PNG", "image/jpeg": b"\xff\xd8\xff", "image/webp": b"RIFF",
                "image/heic": b"", "image/heif": b""}
FRAME_TYPES = {"image/png": b"\x89PNG", "image/jpeg": b"\xff\xd8\xff"}
_MP4: dict[str, bytes] = {}
_MP4_LOCK = threading.Lock()


def error(status: int, message: str, rpc_status: str, details: list | None = None) -> tuple:
    """A scripted Google RPC error answer."""
    return ("error", status, {"error": {"code": status, "message": message, "status": rpc_status,
                                        "details": details or []}})


def rate_limited(delay: str = "12s", per_day: bool = False) -> tuple:
    """429 RESOURCE_EXHAUSTED with RetryInfo (and a QuotaFailure naming the quota)."""
    quota = "GenerateRequestsPerDayPerProjectPerModel" if per_day else \
        "GenerateRequestsPerMinutePerProjectPerModel"
    return error(429, "You exceeded your current quota, please check your plan and billing details.",
                 "RESOURCE_EXHAUSTED", [
                     {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                      "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_requests",
                                      "quotaId": quota}]},
                     {"@type": "type.googleapis.com/google.rpc.Help", "links": []},
                     {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}])


def invalid_argument(message: str) -> tuple:
    """400 INVALID_ARGUMENT."""
    return error(400, message, "INVALID_ARGUMENT")


def png(colour: tuple, width: int = 16, height: int = 16) -> bytes:
    """A real PNG of one colour."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "PNG")
    return buffer.getvalue()


def mp4() -> bytes:
    """A real (tiny) H.264 MP4, rendered once per test session."""
    with _MP4_LOCK:
        if "clip" not in _MP4:
            _MP4["clip"] = sketch_mp4("veo fake", 1, 64, 64, 1)
        return _MP4["clip"]


def make_app(state: FakeState) -> Flask:
    """The fake Gemini app; see the module docstring for scripting."""
    app = Flask("fake_gemini")
    for key, value in (("api_key", "gm-test"), ("done_after", 1), ("outcome", "success"),
                       ("expire_seconds", 60.0), ("operations", {}), ("files", {}), ("times", [])):
        state.data.setdefault(key, value)

    @app.post("/v1beta/models/<path:target>")
    def model_method(target: str):
        """`models/{model}:generateContent` and `models/{model}:predictLongRunning`."""
        state.record()
        model, _, method = target.partition(":")
        state.data["times"].append((method, time.monotonic()))
        if request.headers.get("x-goog-api-key") != state.data["api_key"]:
            return _bad_key()
        if method == "generateContent":
            return _generate(state, model)
        if method == "predictLongRunning":
            return _predict(state, model)
        return _send(error(404, f"Method {method} not found.", "NOT_FOUND"))

    @app.get("/v1beta/models/<model>/operations/<operation_id>")
    def operation(model: str, operation_id: str):
        """Poll a Veo operation."""
        state.record()
        if request.headers.get("x-goog-api-key") != state.data["api_key"]:
            return _bad_key()
        return _operation(state, f"models/{model}/operations/{operation_id}")

    @app.get("/v1beta/files/<path:target>")
    def download(target: str):
        """`files/{id}:download?alt=media`: needs the key, redirects to storage."""
        state.record()
        return _download(state, target)

    @app.get("/storage/<file_id>")
    def storage(file_id: str):
        """The signed storage URL the download redirects to: one download, then 404."""
        state.record()
        return _storage(state, file_id)

    return app


# --- shared --------------------------------------------------------------------------------


def _send(scripted: tuple) -> Response:
    _kind, status, body = scripted
    response = jsonify(body)
    response.status_code = status
    return response


def _bad_key() -> Response:
    return _send(error(400, "API key not valid. Please pass a valid API key.", "INVALID_ARGUMENT", [
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
         "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}]))


def _scripted(state: FakeState, route: str) -> tuple | None:
    """The next scripted answer after sleeping for any ("sleep", s) entries."""
    scripted = state.next_scripted(route)
    while scripted and scripted[0] == "sleep":
        time.sleep(scripted[1])
        scripted = state.next_scripted(route)
    return scripted


def _decode_image(blob, types: dict[str, bytes]) -> bytes | None:
    """Image bytes from `{"mimeType", "data"}` (inlineData) or `{"bytesBase64Encoded", ...}`,
    if the mimeType is one of `types` and the bytes start the way that type does."""
    if not isinstance(blob, dict) or blob.get("mimeType") not in types:
        return None
    try:
        data = base64.b64decode(blob.get("data") or blob.get("bytesBase64Encoded") or "",
                                validate=True)
    except (binascii.Error, ValueError):
        return None
    return data if data and data.startswith(types[blob["mimeType"]]) else None


# --- generateContent -----------------------------------------------------------------------


def _generate(state: FakeState, model: str) -> Response:
    scripted = _scripted(state, "generate")
    if scripted and scripted[0] == "error":
        return _send(scripted)
    if scripted and scripted[0] == "broken":
        return Response('{"candidates": [{"content": ', mimetype="application/json")
    if model not in IMAGE_MODELS:
        return _send(error(404, f"models/{model} is not found for API version v1beta, or is not "
                                "supported for generateContent.", "NOT_FOUND"))
    body = request.get_json(silent=True)
    problem, references = _check_generate(model, body)
    if problem:
        return _send(problem)
    state.data.setdefault("references", []).append(references)
    if scripted:
        return jsonify(_refusal(scripted[0], model))
    return jsonify(_image_answer(state, model, body))


def _check_generate(model: str, body) -> tuple[tuple | None, list[bytes]]:
    """(error answer or None, reference image bytes) for a generateContent body."""
    if not isinstance(body, dict) or not isinstance(body.get("contents"), list) or not body["contents"]:
        return invalid_argument("* GenerateContentRequest.contents: contents is not specified"), []
    unknown = sorted(set(body) - REQUEST_FIELDS)
    if unknown:
        return invalid_argument(f'Invalid JSON payload received. Unknown name "{unknown[0]}": '
                                "Cannot find field."), []
    parts = [part for content in body["contents"] for part in content.get("parts") or []]
    if not any(isinstance(part.get("text"), str) and part["text"].strip() for part in parts):
        return invalid_argument("* GenerateContentRequest.contents[0].parts: contains no text"), []
    references = []
    for part in parts:
        if "inlineData" in part or "inline_data" in part:
            data = _decode_image(part.get("inlineData") or part.get("inline_data"), INLINE_TYPES)
            if data is None:
                return invalid_argument("Unable to process input image. Please retry or report "
                                        "in https://developers.generativeai.google/guide/troubleshooting"), []
            references.append(data)
    return _check_config(model, body.get("generationConfig") or {}), references


def _check_config(model: str, config: dict) -> tuple | None:
    unknown = sorted(set(config) - CONFIG_FIELDS)
    if unknown:
        return invalid_argument(f'Invalid JSON payload received. Unknown name "{unknown[0]}" at '
                                "'generation_config': Cannot find field.")
    if config.get("responseModalities") not in MODALITIES:
        return invalid_argument("The requested combination of response modalities is not "
                                "supported by the model.")
    ratios, sizes = IMAGE_MODELS[model]
    image_config = config.get("imageConfig") or {}
    if set(image_config) - {"aspectRatio", "imageSize"}:
        return invalid_argument("Unknown name in 'generation_config.image_config'.")
    if "aspectRatio" in image_config and image_config["aspectRatio"] not in ratios:
        return invalid_argument(f"Unsupported aspect ratio: {image_config['aspectRatio']}.")
    if "imageSize" in image_config and (sizes is None or image_config["imageSize"] not in sizes):
        return invalid_argument(f"Image size {image_config['imageSize']} is not supported by {model}.")
    return None


def _image_answer(state: FakeState, model: str, body: dict) -> dict:
    final = png((200, 120, secrets.randbelow(256)))
    state.data["last_image"] = final
    parts = [{"text": "Here is your image."},
             {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(final).decode()}}]
    if not model.startswith("gemini-2.5"):
        # Gemini 3 "thinks" in images: an interim thought image precedes the answer.
        thought = {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(png((0, 0, 0), 4, 4)).decode()},
                   "thought": True, "thoughtSignature": "c2lnbmF0dXJl"}
        parts.insert(0, thought)
    return {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP",
                            "index": 0}],
            "usageMetadata": {"promptTokenCount": 17, "candidatesTokenCount": 1290,
                              "totalTokenCount": 1307},
            "modelVersion": model, "responseId": secrets.token_hex(8)}


def _refusal(kind: str, model: str) -> dict:
    """HTTP 200 bodies that carry no image."""
    usage = {"promptTokenCount": 17, "totalTokenCount": 17}
    if kind == "blocked_prompt":
        return {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": usage,
                "modelVersion": model}
    if kind == "image_safety":
        return {"candidates": [{"finishReason": "IMAGE_SAFETY", "index": 0,
                                "finishMessage": "Unable to show the generated image: it may "
                                                 "violate the usage guidelines."}],
                "usageMetadata": usage, "modelVersion": model}
    return {"candidates": [{"content": {"role": "model", "parts": [
                {"text": "I can describe it, but here is no picture."}]},
            "finishReason": "STOP", "index": 0}], "usageMetadata": usage, "modelVersion": model}


# --- Veo ---------------------------------------------------------------------------------


def _predict(state: FakeState, model: str) -> Response:
    scripted = _scripted(state, "predict")
    if scripted and scripted[0] == "error":
        return _send(scripted)
    if scripted and scripted[0] == "broken":
        return Response('{"name": "models/', mimetype="application/json")
    if model not in VEO_MODELS:
        return _send(error(404, f"models/{model} is not found for API version v1beta, or is not "
                                "supported for predictLongRunning.", "NOT_FOUND"))
    body = request.get_json(silent=True)
    problem, frames = _check_predict(body)
    if problem:
        return _send(problem)
    name = f"models/{model}/operations/{secrets.token_hex(6)}"
    state.data["operations"][name] = {"polls": 0, "outcome": state.data["outcome"],
                                      "body": body, "frames": frames}
    return jsonify({"name": name})


def _check_predict(body) -> tuple[tuple | None, list[bytes]]:
    if not isinstance(body, dict) or not isinstance(body.get("instances"), list) \
            or len(body["instances"]) != 1:
        return invalid_argument("Exactly one instance is required."), []
    instance, parameters = body["instances"][0], body.get("parameters") or {}
    unknown = sorted(set(instance) - VEO_INSTANCE_FIELDS) + sorted(set(parameters) - VEO_PARAMETERS)
    if unknown:
        return invalid_argument(f"`{unknown[0]}` isn't supported by this model."), []
    if not isinstance(instance.get("prompt"), str) or not instance["prompt"].strip():
        return invalid_argument("A prompt is required."), []
    frames = []
    for key in ("image", "lastFrame"):
        if key in instance:
            blob = instance[key].get("inlineData") or instance[key]
            data = _decode_image(blob, FRAME_TYPES)
            if data is None:
                return invalid_argument(f"Invalid `{key}`: send bytesBase64Encoded and mimeType."), []
            frames.append(data)
    return _check_veo_parameters(parameters, bool(frames)), frames


def _check_veo_parameters(parameters: dict, has_image: bool) -> tuple | None:
    if parameters.get("aspectRatio", "16:9") not in ("16:9", "9:16"):
        return invalid_argument("Unsupported aspect ratio.")
    resolution = parameters.get("resolution", "720p")
    if resolution not in ("720p", "1080p", "4k"):
        return invalid_argument(f"Unsupported resolution: {resolution}.")
    duration = str(parameters.get("durationSeconds", 8))
    if duration not in ("4", "6", "8"):
        return invalid_argument("durationSeconds must be 4, 6 or 8.")
    if resolution != "720p" and duration != "8":
        return invalid_argument(f"{resolution} needs an 8 second duration.")
    person = parameters.get("personGeneration")
    if (has_image and person == "allow_all") or (not has_image and person == "allow_adult"):
        return invalid_argument(f"{person} for personGeneration is currently not supported.")
    return None


def _operation(state: FakeState, name: str) -> Response:
    scripted = _scripted(state, "operation")
    if scripted and scripted[0] == "error":
        return _send(scripted)
    if scripted and scripted[0] == "broken":
        return Response('{"name": ', mimetype="application/json")
    record = state.data["operations"].get(name)
    if record is None:
        return _send(error(404, "Operation not found.", "NOT_FOUND"))
    record["polls"] += 1
    if record["outcome"] == "never" or record["polls"] < state.data["done_after"]:
        return jsonify({"name": name})  # proto-JSON leaves out `done: false`
    return jsonify(_finished(state, name, record["outcome"]))


def _finished(state: FakeState, name: str, outcome: str) -> dict:
    if outcome == "error":
        return {"name": name, "done": True,
                "error": {"code": 3, "message": "The prompt could not be processed."}}
    result_type = "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse"
    if outcome == "rai":
        return {"name": name, "done": True, "response": {"@type": result_type, "generateVideoResponse": {
            "raiMediaFilteredCount": 1, "raiMediaFilteredReasons": [
                "We encountered an issue with the audio for your prompt. You have not been "
                "charged for this attempt."]}}}
    record = state.data["operations"][name]
    if "file_id" not in record:
        record["file_id"] = secrets.token_hex(6)
        state.data["files"][record["file_id"]] = {"created": time.monotonic(),
                                                  "token": secrets.token_hex(8), "downloaded": False}
    base = state.data.get("video_base") or request.host_url.rstrip("/")
    uri = f"{base}/v1beta/files/{record['file_id']}:download?alt=media"
    return {"name": name, "done": True, "response": {"@type": result_type, "generateVideoResponse": {
        "generatedSamples": [{"video": {"uri": uri}}]}}}


def _storage(state: FakeState, file_id: str) -> Response:
    record = state.data["files"].get(file_id)
    if record is None or record["token"] != request.args.get("token") or record["downloaded"]:
        return Response("Not Found", status=404)
    record["downloaded"] = True  # a signed one-time URL: later downloads get 404
    return Response(mp4(), mimetype="video/mp4")


def _download(state: FakeState, target: str) -> Response:
    file_id, _, method = target.partition(":")
    scripted = _scripted(state, "download")
    if scripted and scripted[0] == "error":
        return _send(scripted)
    key = request.headers.get("x-goog-api-key") or request.args.get("key")
    if key != state.data["api_key"]:
        return _send(error(403, "Method doesn't allow unregistered callers (callers without "
                                "established identity). Please use API Key or other form of API "
                                "consumer identity to call this API.", "PERMISSION_DENIED"))
    record = state.data["files"].get(file_id)
    expired = record is None or time.monotonic() - record["created"] > state.data["expire_seconds"]
    if method != "download" or request.args.get("alt") != "media" or expired:
        return _send(error(404, "File not found or expired.", "NOT_FOUND"))
    return redirect(f"/storage/{file_id}?token={record['token']}", code=302)
