"""OpenAI Images API (gpt-image-1, gpt-image-1.5, gpt-image-2): one synchronous call per run.

Wire format: docs/providers.md, OpenAI. A text-only run is a JSON
`POST /images/generations`; a run with reference images is a multipart
`POST /images/edits` whose `image[]` parts are the images, downloaded by us through
the guarded fetcher (so OpenAI never gets a URL we have not vetted, and private
addresses stay unreachable) and converted to PNG unless they are PNG, JPEG or WebP.
GPT image models always answer with `data[].b64_json`.
There is no job id and no cancel: closing the connection is the only way to stop one.
"""
from __future__ import annotations

import requests

from .base import Done, Job, Output, ProviderError
from .common import ProviderAdapter
from .http import KeyedClient, json_field, parse_retry_after
from .media import WEB_IMAGE_TYPES, decode_base64, sniff_image_type

#: gpt-image-1 and gpt-image-1.5 take only these three fixed sizes (besides `auto`).
CLASSIC_SIZES = {"1:1": "1024x1024", "3:2": "1536x1024", "2:3": "1024x1536"}

#: gpt-image-2 takes any WxH with both sides divisible by 16, a ratio between 1:3 and 3:1,
#: at most 3840x2160 (read as: long edge <= 3840, short edge <= 2160), and calls sizes above
#: 2560x1440 experimental. Each tier is the largest exact-ratio size inside a box:
#: 1K inside 1536x1024 (the classic sizes), 2K inside 2560x1440 (the largest non-experimental
#: size), 4K inside 3840x2160 (the documented maximum).
GPT_IMAGE_2_SIZES = {
    "1K": {"1:1": "1024x1024", "2:3": "1024x1536", "3:2": "1536x1024", "3:4": "1008x1344",
           "4:3": "1344x1008", "4:5": "1024x1280", "5:4": "1280x1024", "9:16": "864x1536",
           "16:9": "1536x864", "21:9": "1456x624"},
    "2K": {"1:1": "1440x1440", "2:3": "1440x2160", "3:2": "2160x1440", "3:4": "1440x1920",
           "4:3": "1920x1440", "4:5": "1408x1760", "5:4": "1760x1408", "9:16": "1440x2560",
           "16:9": "2560x1440", "21:9": "2464x1056"},
    "4K": {"1:1": "2160x2160", "2:3": "2144x3216", "3:2": "3216x2144", "3:4": "2160x2880",
           "4:3": "2880x2160", "4:5": "2112x2640", "5:4": "2640x2112", "9:16": "2160x3840",
           "16:9": "3840x2160", "21:9": "3808x1632"},
}

CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg",
                 "webp": "image/webp"}


def size_for(upstream: str, run_input: dict) -> str:
    """The `size` string for a run: gpt-image-2 by aspect ratio and resolution tier,
    older models from their three fixed sizes."""
    aspect_ratio = run_input.get("aspect_ratio", "1:1")
    if upstream.startswith("gpt-image-2"):
        table = GPT_IMAGE_2_SIZES[run_input.get("resolution", "1K")]
    else:
        table = CLASSIC_SIZES
    try:
        return table[aspect_ratio]
    except KeyError:
        raise ProviderError(f"{upstream} has no size for aspect ratio {aspect_ratio}.",
                            code="invalid_input") from None


class OpenAIClient(KeyedClient):
    """Talks to the OpenAI API with a bearer key; understands its `{"error": {...}}` bodies."""

    name = "OpenAI"
    base_url_env = "OPENAI_BASE_URL"
    default_base_url = "https://api.openai.com/v1"
    #: OPENAI_BASE_URL conventionally ends in /v1; the bare host is accepted too.
    api_version = "/v1"
    #: A 4K gpt-image-2 image can take minutes; the run's deadline bounds this further.
    default_timeout = 300.0

    def describe_error(self, response: requests.Response) -> tuple[str, str | None]:
        """(message, code or type) from `{"error": {"message", "type", "param", "code"}}`."""
        message, _ = super().describe_error(response)
        error = json_field(response, "error")
        code = error.get("code") or error.get("type")
        if error.get("param"):
            message = f"{message} (param: {error['param']})"
        return message, code if isinstance(code, str) else None

    def error_for(self, response: requests.Response) -> ProviderError:
        """Like the base policy, except that an exhausted quota (429 `insufficient_quota`)
        is final, and 409 (a conflict the SDKs retry) is retryable."""
        status = response.status_code
        message, code = self.describe_error(response)
        if status == 429 and code == "insufficient_quota":
            return ProviderError(f"OpenAI answered 429: {message} (the account's quota is "
                                 "used up; check billing)", code="provider_auth")
        if status == 409:
            return ProviderError(f"OpenAI answered 409: {message}", code="provider_error",
                                 retryable=True, retry_after=parse_retry_after(response.headers))
        return super().error_for(response)

    def final_code(self, status: int, provider_code: str | None, detail: str) -> str:
        """Safety refusals (`moderation_blocked`, `image_generation_user_error`) are
        `content_rejected`; other 4xx answers are the input's fault."""
        if provider_code in ("moderation_blocked", "image_generation_user_error",
                             "content_policy_violation"):
            return "content_rejected"
        return super().final_code(status, provider_code, detail)


class OpenAIImagesAdapter(ProviderAdapter):
    """Runs gpt-image models: generations for text-only runs, edits with reference images.
    Synchronous: no upstream job to poll, and no cancel (only closing the connection stops
    a generation)."""

    CLIENT = OpenAIClient
    CREDENTIALS = {"api_key": "OPENAI_API_KEY"}
    #: The catalog promises "4 MB each" for reference images of every OpenAI model.
    REFERENCE_MAX_BYTES = 4 * 1024 * 1024
    #: What `/images/edits` accepts; any other still image is sent as PNG (see media.py).
    REFERENCE_TYPES = WEB_IMAGE_TYPES

    def start(self, job: Job) -> Done:
        """Generate (or edit) the image in one call and return it."""
        fields = self.fields(job)
        if job.input.get("image_urls"):
            response = self._edit(job, fields)
        else:
            response = self.client.request("POST", "/images/generations", json=fields,
                                           seconds_left=job.seconds_left())
        return Done(self.outputs(self.client.json(response)))

    def fields(self, job: Job) -> dict:
        """The request fields shared by generations and edits."""
        upstream = job.spec.upstream
        fields = {"model": upstream, "prompt": job.input["prompt"], "n": 1,
                  "size": size_for(upstream, job.input)}
        if job.input.get("quality"):
            fields["quality"] = job.input["quality"]
        return fields

    def _edit(self, job: Job, fields: dict) -> requests.Response:
        """`POST /images/edits` as multipart, one repeated `image[]` part per reference."""
        # /images/edits takes PNG, JPEG and WebP only; others are converted before the call.
        images = self.reference_images(job)
        extension = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
        files = [("image[]", (f"reference-{i}.{extension[kind]}", data, kind))
                 for i, (data, kind) in enumerate(images, start=1)]
        form = {key: str(value) for key, value in fields.items()}
        return self.client.request("POST", "/images/edits", data=form, files=files,
                                   seconds_left=job.seconds_left())

    def outputs(self, body) -> list[Output]:
        """Decode every `data[].b64_json` image of an ImagesResponse."""
        items = body.get("data") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            raise ProviderError("OpenAI answered without any image.",
                                code="provider_bad_response")
        declared = CONTENT_TYPES.get(str(body.get("output_format") or "png").lower(), "image/png")
        outputs = []
        for item in items:
            encoded = item.get("b64_json") if isinstance(item, dict) else None
            message = "OpenAI answered with an image that is not valid base64."
            data = decode_base64(encoded, message)
            if not data:
                raise ProviderError(message, code="provider_bad_response")
            outputs.append(Output(sniff_image_type(data) or declared, data=data))
        return outputs
