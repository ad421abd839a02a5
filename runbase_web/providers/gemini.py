"""Google Gemini API: Nano Banana images (`generateContent`) and Veo video
(`predictLongRunning` plus operation polling).

Wire formats (docs/providers.md, Google): `generateContent` (images) and Veo. Both use
the `x-goog-api-key` header and the Google RPC error envelope
`{"error": {"code", "message", "status", "details"}}`; a 429 carries its wait time in a
`google.rpc.RetryInfo` detail, never in a Retry-After header. Two traps: an invalid key is
HTTP 400 (not 401), and a safety block is HTTP 200 without an image.
"""
from __future__ import annotations

import base64
from urllib.parse import urlsplit

import requests

from .base import Done, Job, Output, Pending, ProviderError
from .common import ProviderAdapter
from .http import KeyedClient, json_field
from .media import WEB_IMAGE_TYPES, base64_text, decode_base64

#: The catalog promises "30 MB each" for Nano Banana reference images and Veo frames.
MAX_REFERENCE_BYTES = 30 * 1024 * 1024
#: An 8 s 1080p clip is tens of MB; anything far beyond is not a Veo clip.
MAX_VIDEO_BYTES = 300 * 1024 * 1024
VIDEO_FETCH_TIMEOUT = 120.0
#: The types an `inlineData` image part may have; other stills are sent as PNG.
INLINE_IMAGE_TYPES = WEB_IMAGE_TYPES | {"image/heic", "image/heif"}
#: Veo's first and last frames: the Veo reference lists only JPEG and PNG.
VEO_FRAME_TYPES = frozenset({"image/png", "image/jpeg"})

#: Output finish reasons that mean the image was withheld for policy reasons.
POLICY_FINISH_REASONS = frozenset({
    "SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "RECITATION", "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION"})

#: google.rpc.Code numbers (operation errors) → our error codes.
RPC_CODES = {3: "invalid_input", 5: "provider_error", 7: "provider_auth", 8: "provider_busy",
             9: "invalid_input", 11: "invalid_input", 16: "provider_auth"}


def parse_duration(value) -> float | None:
    """Seconds from a protobuf Duration: "12s", "45.837906927s" or {"seconds", "nanos"}."""
    if isinstance(value, dict):
        try:
            return float(value.get("seconds", 0)) + float(value.get("nanos", 0)) / 1e9
        except (TypeError, ValueError):
            return None
    if isinstance(value, str) and value.endswith("s"):
        try:
            return max(float(value[:-1]), 0.0)
        except ValueError:
            return None
    return None


def _details(error: dict, type_suffix: str) -> list[dict]:
    """The `error.details` items whose `@type` ends with `type_suffix`."""
    details = error.get("details")
    if not isinstance(details, list):
        return []
    return [item for item in details if isinstance(item, dict)
            and str(item.get("@type", "")).endswith(type_suffix)]


class GeminiClient(KeyedClient):
    """Talks to the Gemini API with `x-goog-api-key`; understands Google RPC error bodies."""

    name = "Gemini"
    base_url_env = "GEMINI_BASE_URL"
    default_base_url = "https://generativelanguage.googleapis.com/v1beta"
    #: GEMINI_BASE_URL may be the bare host (as Google's SDKs take it) or end in a version.
    api_version = "/v1beta"
    #: Pro image models can take minutes; the run's deadline bounds this further.
    default_timeout = 300.0

    def auth_headers(self) -> dict[str, str]:
        """The API key header on every request."""
        return {"x-goog-api-key": self.api_key}

    def describe_error(self, response: requests.Response) -> tuple[str, str | None]:
        """(message, `status` such as INVALID_ARGUMENT) from a Google RPC error body."""
        error = json_field(response, "error")
        if not error:
            return super().describe_error(response)
        return str(error.get("message") or error.get("status") or "no details")[:500], \
            error.get("status") if isinstance(error.get("status"), str) else None

    def error_for(self, response: requests.Response) -> ProviderError:
        """Google's quirks on top of the base policy: an invalid key is a 400, 429 waits come
        from RetryInfo, a per-day quota is not worth retrying, 404 is a server-side problem."""
        status = response.status_code
        error = json_field(response, "error")
        message = f"Gemini answered {status}: {self.describe_error(response)[0]}"
        reasons = {item.get("reason") for item in _details(error, "google.rpc.ErrorInfo")}
        if status == 429:
            return _rate_limited(message, error)
        if reasons & {"API_KEY_INVALID", "API_KEY_EXPIRED"} or \
                error.get("status") == "FAILED_PRECONDITION":
            return ProviderError(message, code="provider_auth")
        if status == 404:
            return ProviderError(message, code="provider_error")
        return super().error_for(response)

    def download_headers(self, uri: str) -> dict[str, str]:
        """The key for a file download: on the API's own origin (downloaded through this
        client) and on Google's own https hosts; never anywhere else."""
        parts = urlsplit(uri)
        if self.owns(uri) or (parts.scheme == "https"
                              and (parts.hostname or "").endswith(".googleapis.com")):
            return self.auth_headers()
        return {}


def _rate_limited(message: str, error: dict) -> ProviderError:
    """429 RESOURCE_EXHAUSTED: retry after RetryInfo's delay, unless a per-day quota is out."""
    violations = [violation for item in _details(error, "google.rpc.QuotaFailure")
                  for violation in item.get("violations") or [] if isinstance(violation, dict)]
    if any("PerDay" in str(v.get("quotaId", "")) for v in violations):
        return ProviderError(f"{message} (a per-day quota is used up)", code="provider_busy")
    delays = [parse_duration(item.get("retryDelay"))
              for item in _details(error, "google.rpc.RetryInfo")]
    delay = next((d for d in delays if d is not None), None)
    return ProviderError(message, code="provider_busy", retryable=True, retry_after=delay)


class GeminiAdapter(ProviderAdapter):
    """What both Gemini adapters share: the client, built from `GEMINI_API_KEY` and optional
    `GEMINI_BASE_URL`, and the reference-image size cap."""

    CLIENT = GeminiClient
    CREDENTIALS = {"api_key": "GEMINI_API_KEY"}
    REFERENCE_MAX_BYTES = MAX_REFERENCE_BYTES


def _model_path(upstream: str, method: str) -> str:
    """`/models/{model}:{method}`, accepting an upstream name with or without `models/`."""
    name = upstream[len("models/"):] if upstream.startswith("models/") else upstream
    return f"/models/{name}:{method}"


# --- Nano Banana images ------------------------------------------------------------------


class GeminiImageAdapter(GeminiAdapter):
    """Runs the Nano Banana models with one `generateContent` call. Synchronous: no upstream
    job to poll, and nothing to cancel (only closing the connection stops it)."""

    #: The types an `inlineData` image part may have; other stills are sent as PNG.
    REFERENCE_TYPES = INLINE_IMAGE_TYPES

    def start(self, job: Job) -> Done:
        """Generate the image in one call and return its non-thought image parts."""
        response = self.client.request("POST", _model_path(job.spec.upstream, "generateContent"),
                                       json=self.body(job), seconds_left=job.seconds_left())
        return Done(image_outputs(self.client.json(response)))

    def body(self, job: Job) -> dict:
        """The generateContent request: prompt and reference images, image-only output."""
        parts = [{"text": job.input["prompt"]}]
        parts += [{"inlineData": {"mimeType": kind, "data": base64_text(data)}}
                  for data, kind in self.reference_images(job)]
        # IMAGE alone: with TEXT+IMAGE the model may answer in words only.
        config: dict = {"responseModalities": ["IMAGE"]}
        image_config = self.image_config(job)
        if image_config:
            config["imageConfig"] = image_config
        return {"contents": [{"role": "user", "parts": parts}], "generationConfig": config}

    def image_config(self, job: Job) -> dict:
        """`aspectRatio` (left out for "auto": the model picks, e.g. from the references) and
        `imageSize` only for models whose schema offers a resolution."""
        config = {}
        aspect_ratio = job.input.get("aspect_ratio")
        if aspect_ratio and aspect_ratio != "auto":
            config["aspectRatio"] = aspect_ratio
        if "resolution" in job.spec.properties and job.input.get("resolution"):
            config["imageSize"] = job.input["resolution"]
        return config


def image_outputs(body) -> list[Output]:
    """The final (non-thought) inline images of a generateContent answer.

    A 200 answer can still be a refusal: a `promptFeedback.blockReason`, or a candidate
    without an image whose `finishReason` says why. Both are final failures.
    """
    if not isinstance(body, dict):
        raise ProviderError("Gemini answered with something that is not a JSON object.",
                            code="provider_bad_response")
    feedback = body.get("promptFeedback") or {}
    if feedback.get("blockReason"):
        detail = feedback.get("blockReasonMessage") or ""
        raise ProviderError(f"Gemini blocked the prompt ({feedback['blockReason']}). {detail}".strip(),
                            code="content_rejected")
    candidates = [c for c in body.get("candidates") or [] if isinstance(c, dict)]
    for candidate in candidates:
        outputs = _candidate_images(candidate)
        if outputs:
            return outputs
    raise _no_image_error(candidates)


def _candidate_images(candidate: dict) -> list[Output]:
    """Decoded non-thought `inlineData` image parts of one candidate."""
    parts = (candidate.get("content") or {}).get("parts") or []
    outputs = []
    for part in parts:
        if not isinstance(part, dict) or part.get("thought"):
            continue  # thought parts hold interim images, not the answer
        inline = part.get("inlineData") or part.get("inline_data")
        if not isinstance(inline, dict):
            continue
        mime = inline.get("mimeType") or inline.get("mime_type") or "image/png"
        if not str(mime).startswith("image/"):
            continue
        data = decode_base64(inline.get("data"), "Gemini sent an image that is not valid base64.")
        if data:
            outputs.append(Output(mime, data=data))
    return outputs


def _no_image_error(candidates: list[dict]) -> ProviderError:
    """Why a 200 answer has no image: a policy finish reason, or just no image."""
    reason = next((c.get("finishReason") for c in candidates if c.get("finishReason")), None)
    message = next((c.get("finishMessage") for c in candidates if c.get("finishMessage")), "")
    text = " ".join(part.get("text", "") for c in candidates
                    for part in (c.get("content") or {}).get("parts") or []
                    if isinstance(part, dict) and not part.get("thought"))[:200]
    if reason in POLICY_FINISH_REASONS:
        return ProviderError(f"Gemini withheld the image ({reason}). {message}".strip(),
                             code="content_rejected")
    said = f" It said: {text.strip()}" if text.strip() else ""
    return ProviderError(f"Gemini answered without an image (finishReason {reason or 'none'}). "
                         f"{message}{said}".strip(), code="provider_error")


# --- Veo video ---------------------------------------------------------------------------


class VeoAdapter(GeminiAdapter):
    """Runs Veo: submit a long-running operation once, poll it, download the video.

    The video URI needs the API key, and the worker downloads `Output.url` without provider
    headers, so `poll` downloads the file itself and returns bytes: through this client when
    the URI is on the configured API origin (GEMINI_BASE_URL may be a private compatible
    server the SSRF guard would refuse), through the guarded fetcher otherwise. The file is
    kept by Google for 2 days; we fetch it as soon as the operation ends. The Gemini API
    documents no cancel for Veo operations.
    """

    #: Veo never finishes in under ~11 s: the first look after 8 s, then every 10 s (the
    #: docs' interval).
    POLL_SCHEDULE = (8.0, 10.0)
    #: Veo's first and last frames: the Veo reference lists only JPEG and PNG.
    REFERENCE_TYPES = VEO_FRAME_TYPES

    def start(self, job: Job) -> Pending:
        """Submit the operation and hand its name to the worker to commit."""
        response = self.client.request("POST", _model_path(job.spec.upstream, "predictLongRunning"),
                                       json=self.body(job), seconds_left=job.seconds_left())
        operation = self.client.json(response)
        name = operation.get("name") if isinstance(operation, dict) else None
        if not isinstance(name, str) or not name:
            raise ProviderError("Veo accepted the request but returned no operation name.",
                                code="provider_bad_response")
        return self.pending(job, name, {"operation": name})

    def poll(self, job: Job) -> Done | Pending:
        """Look at the operation: still running, failed, filtered, or done with a video."""
        operation = self.read(job, "/" + job.upstream_id.lstrip("/"))
        if not operation.get("done"):  # proto-JSON leaves out `done: false`
            return self.pending(job, job.upstream_id, {"operation": job.upstream_id})
        if operation.get("error"):
            raise _operation_error(operation["error"])
        return Done([self._video(job, operation.get("response") or {})])

    def body(self, job: Job) -> dict:
        """One instance (prompt, first frame `image`, `lastFrame`) and the parameters.

        `personGeneration` is left to the server: Veo 3 takes only "allow_all" for text and
        only "allow_adult" for image input, and some regions only "allow_adult".
        """
        instance: dict = {"prompt": job.input["prompt"]}
        for key, (data, kind) in zip(("image", "lastFrame"), self.reference_images(job)):
            instance[key] = {"bytesBase64Encoded": base64_text(data), "mimeType": kind}
        parameters = {"aspectRatio": job.input.get("aspect_ratio", "16:9"),
                      "resolution": job.input.get("resolution", "720p"),
                      "durationSeconds": 8, "sampleCount": 1}
        return {"instances": [instance], "parameters": parameters}

    def _video(self, job: Job, response: dict) -> Output:
        """The first generated sample as MP4 bytes; no sample means it was filtered."""
        result = response.get("generateVideoResponse") or {}
        samples = result.get("generatedSamples") or []
        video = (samples[0].get("video") or {}) if samples and isinstance(samples[0], dict) else {}
        if not video:
            reasons = "; ".join(str(r) for r in result.get("raiMediaFilteredReasons") or [])
            if result.get("raiMediaFilteredCount") or reasons:
                raise ProviderError(f"Veo filtered the video for safety. {reasons}".strip(),
                                    code="content_rejected")
            raise ProviderError("Veo finished without a video.", code="provider_bad_response")
        if video.get("encodedVideo"):
            return Output(video.get("encoding") or "video/mp4",
                          data=base64.b64decode(video["encodedVideo"]))
        return Output("video/mp4", data=self._download(job, str(video.get("uri") or "")))

    def _download(self, job: Job, uri: str) -> bytes:
        """Download the video with the key; a transient failure is retried by polling again
        (the operation stays done), a refused or expired file fails the run."""
        if not uri:
            raise ProviderError("Veo finished without a video URI.", code="provider_bad_response")
        return self.client.download(uri, fetcher=self.fetcher, max_bytes=MAX_VIDEO_BYTES,
                                    timeout=min(VIDEO_FETCH_TIMEOUT, max(job.seconds_left(), 1.0)),
                                    what="The Veo video")


def _operation_error(error) -> ProviderError:
    """A finished operation's `error {code, message}` (numeric google.rpc.Code) as a final
    failure: the operation is over, so polling it again would only repeat the answer."""
    error = error if isinstance(error, dict) else {}
    code = error.get("code")
    message = f"Veo failed: {error.get('message') or 'no details'} (code {code})"
    mapped = RPC_CODES.get(code, "provider_error")
    if mapped == "invalid_input" and "safety" in message.lower():
        mapped = "content_rejected"
    return ProviderError(message, code=mapped)
