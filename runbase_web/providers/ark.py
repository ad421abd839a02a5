"""BytePlus ModelArk (Volcengine Ark): Seedream images (sync) and Seedance video tasks (async).

Wire formats (docs/providers.md, ModelArk): Seedream `POST /images/generations` and Seedance
(`/contents/generations/tasks`). Both use `Authorization: Bearer <ARK key>` and the
OpenAI-like error envelope `{"error": {"code", "message", "param", "type"}}`; no Retry-After
is documented, so a 429 is retried with our own backoff.

Reference images (`image_urls`) are downloaded by us through the guarded fetcher and sent as
lower-case `data:image/<fmt>;base64,…` URIs, which Ark accepts alongside https URLs: Ark never
gets a URL we have not fetched ourselves (so never a private address), and our own size cap
and type check apply before anything is paid for.
"""
from __future__ import annotations

import logging

from .base import Done, Job, Output, Pending, ProviderError
from .common import ProviderAdapter, cancel_seconds, sniff_type, unknown_status
from .http import KeyedClient
from .media import WEB_IMAGE_TYPES, data_uri, decode_base64, sniff_image_type

log = logging.getLogger(__name__)

#: Seedream size tiers per quality. 4.5 takes 2K and 4K; 5.0 lite takes 2K, 3K and 4K, but a
#: 3rd-party catalog says BytePlus caps 5.0 lite at 3K, so its "high" is 3K.
TIERS = {"seedream-5": {"basic": "2K", "high": "3K"}, "default": {"basic": "2K", "high": "4K"}}

#: Explicit `WxH` sizes per tier and aspect ratio (the docs' second size form; exact, so the
#: output shape never depends on the prompt). 2K: the docs' 4.x examples (1:1, 4:3, 16:9,
#: 21:9) and their 2K table; 4K: the docs' 1:1 and 16:9, the rest scaled alike and kept
#: under the 16,777,216-pixel maximum; 3K: the 2K sizes × 1.5. All are inside every
#: model's pixel range (>= 3,686,400) and ratio limits.
SIZES = {
    "2K": {"1:1": "2048x2048", "4:3": "2304x1728", "3:4": "1728x2304", "16:9": "2848x1600",
           "9:16": "1600x2848", "3:2": "2496x1664", "2:3": "1664x2496", "21:9": "3136x1344"},
    "3K": {"1:1": "3072x3072", "4:3": "3456x2592", "3:4": "2592x3456", "16:9": "4272x2400",
           "9:16": "2400x4272", "3:2": "3744x2496", "2:3": "2496x3744", "21:9": "4704x2016"},
    "4K": {"1:1": "4096x4096", "4:3": "4704x3520", "3:4": "3520x4704", "16:9": "5504x3040",
           "9:16": "3040x5504", "3:2": "4992x3328", "2:3": "3328x4992", "21:9": "6240x2656"},
}

#: Where Seedance inputs go in the create body: Runbase field → Ark body field.
TASK_FIELDS = {"aspect_ratio": "ratio", "resolution": "resolution"}
#: Roles of the frame images, in the order the catalog lists them (first, then last frame).
FRAME_ROLES = ("first_frame", "last_frame")


def size_for(upstream: str, run_input: dict) -> str:
    """The explicit `WxH` for a Seedream run from its aspect ratio and quality."""
    tiers = TIERS["seedream-5"] if "seedream-5" in upstream else TIERS["default"]
    tier = tiers.get(run_input.get("quality", "basic"), tiers["basic"])
    ratio = run_input.get("aspect_ratio", "1:1")
    try:
        return SIZES[tier][ratio]
    except KeyError:
        raise ProviderError(f"{upstream} has no size for aspect ratio {ratio}.",
                            code="invalid_input") from None


def is_sensitive(code: str | None) -> bool:
    """True for Ark's content-safety codes (`InputTextSensitiveContentDetected`,
    `OutputImageSensitiveContentDetected`, `SensitiveContentDetected.Violence`, …)."""
    return bool(code) and "SensitiveContent" in code


def error_from_object(error, what: str) -> ProviderError:
    """A final ProviderError from an `{"code", "message"}` object inside a 200 answer or a
    failed task: the request is over, so sending it again would repeat the answer."""
    error = error if isinstance(error, dict) else {"message": str(error or "no details")}
    code = error.get("code")
    message = f"{what}: {error.get('message') or 'no details'}" + (f" ({code})" if code else "")
    return ProviderError(message[:600], code="content_rejected" if is_sensitive(code)
                         else "provider_error")


class ArkClient(KeyedClient):
    """HTTP client for ModelArk: Bearer key, `{"error": {...}}` bodies."""

    name = "BytePlus ModelArk"
    base_url_env = "ARK_BASE_URL"
    default_base_url = "https://ark.ap-southeast.bytepluses.com/api/v3"
    #: ARK_BASE_URL may be the bare host or end in /api/v3 (as the Ark SDKs take it).
    api_version = "/api/v3"
    #: One Seedream image can take a minute or more (the docs' advice: read timeout >= 120 s).
    default_timeout = 300.0

    def final_code(self, status: int, provider_code: str | None, detail: str) -> str:
        """Safety codes are `content_rejected`; an unknown or closed model or endpoint (404,
        `InvalidEndpoint.*`) is the operator's configuration, not the user's input."""
        if is_sensitive(provider_code):
            return "content_rejected"
        if status == 404 or (provider_code or "").startswith(("InvalidEndpoint", "ModelNotOpen")):
            return "provider_error"
        return super().final_code(status, provider_code, detail)


class ArkAdapter(ProviderAdapter):
    """What both Ark adapters share: the client, built from `ARK_API_KEY` and optional
    `ARK_BASE_URL`, and reference images sent as data URIs."""

    CLIENT = ArkClient
    CREDENTIALS = {"api_key": "ARK_API_KEY"}
    #: The catalog (and BytePlus's page) allow 10 MB per reference or frame image.
    REFERENCE_MAX_BYTES = 10 * 1024 * 1024
    #: Reference and frame types sent as they are (all Ark models take these three); other
    #: still images are converted to PNG first.
    REFERENCE_TYPES = WEB_IMAGE_TYPES

    def data_uris(self, job: Job) -> list[str]:
        """The run's `image_urls`, downloaded through the guarded fetcher, as data URIs."""
        return [data_uri(data, kind) for data, kind in self.reference_images(job)]


# --- Seedream ------------------------------------------------------------------------------


class SeedreamAdapter(ArkAdapter):
    """Seedream 4.5 / 5.0 lite: one synchronous request returns the image(s); there is no
    job id and no cancel call."""

    def start(self, job: Job) -> Done:
        """Generate the image in one call and return it (URL outputs are downloaded by the
        worker right away: Ark's URLs last 24 h)."""
        response = self.client.request("POST", "/images/generations", json=self.body(job),
                                       seconds_left=job.seconds_left())
        # Retrying a failed download here would pay for a second generation.
        return self.done(job, self.outputs(self.client.json(response)), retryable=False)

    def body(self, job: Job) -> dict:
        """The request: explicit size, URL answers, and `watermark: false` sent explicitly
        (Ark's default is true). There is no `n`: one image per run."""
        body = {"model": job.spec.upstream, "prompt": job.input["prompt"],
                "size": size_for(job.spec.upstream, job.input), "response_format": "url",
                "watermark": False}
        images = self.data_uris(job)
        if images:
            body["image"] = images
        return body

    def outputs(self, body) -> list[Output]:
        """Every image of `data[]`; `{"error"}` items (partial failures) are skipped, and an
        answer with no image at all fails with the first item's (or the top-level) error."""
        if not isinstance(body, dict):
            raise ProviderError("Seedream sent an answer that is not a JSON object.",
                                code="provider_bad_response", retryable=True)
        items = body.get("data") if isinstance(body.get("data"), list) else []
        outputs = [output for item in items if (output := _image_output(item)) is not None]
        if outputs:
            return outputs
        errors = [item["error"] for item in items if isinstance(item, dict) and item.get("error")]
        if errors or body.get("error"):
            raise error_from_object(errors[0] if errors else body["error"], "Seedream refused")
        raise ProviderError("Seedream answered without any image.", code="provider_bad_response")


def _image_output(item) -> Output | None:
    """One `data[]` item as an Output: a URL for the worker to fetch, or decoded base64."""
    if not isinstance(item, dict):
        return None
    if isinstance(item.get("url"), str) and item["url"]:
        return Output(sniff_type(item["url"]) or "image/jpeg", url=item["url"])
    if isinstance(item.get("b64_json"), str):
        data = decode_base64(item["b64_json"], "Seedream sent an image that is not valid base64.")
        return Output(sniff_image_type(data) or "image/jpeg", data=data)
    return None


# --- Seedance ------------------------------------------------------------------------------


class SeedanceAdapter(ArkAdapter):
    """Seedance 1.0 lite / pro, 1.5 pro, 2.0 (fast): create a task once, then poll it."""

    #: Videos take tens of seconds to minutes; a look every 5 s is plenty.
    POLL_SCHEDULE = (5.0,)
    #: Seedance task states (ModelArk's task API and its status appendix).
    RUNNING = frozenset({"queued", "running"})

    def start(self, job: Job) -> Pending:
        """Create the task (once) and hand its id to the worker to commit before any poll."""
        response = self.client.request("POST", "/contents/generations/tasks", json=self.body(job),
                                       seconds_left=job.seconds_left())
        task = self.client.json(response)
        task_id = task.get("id") if isinstance(task, dict) else None
        if not isinstance(task_id, str) or not task_id:
            raise ProviderError("Seedance accepted the request but returned no task id.",
                                code="provider_bad_response")
        return self.pending(job, task_id)

    def poll(self, job: Job) -> Done | Pending:
        """Look at the task: queued/running, succeeded with a video URL, or over."""
        task = self.read(job, f"/contents/generations/tasks/{job.upstream_id}")
        return self.outcome(job, job.upstream_id, task.get("status"),
                            outputs=lambda: [_video_output(task)],
                            failure=lambda: _task_error(task))

    def cancel(self, job: Job) -> None:
        """Ask Ark to cancel the task. Only a queued task can be cancelled (a running one
        cannot be stopped); any refusal is ignored, the run is refunded either way."""
        try:
            self.client.request("DELETE", f"/contents/generations/tasks/{job.upstream_id}",
                                seconds_left=cancel_seconds(job))
        except ProviderError as error:
            log.info("Seedance task %s was not cancelled: %s", job.upstream_id, error.message)

    def body(self, job: Job) -> dict:
        """The create body: model, content items, and the documented body fields (not the
        legacy `--ratio …` prompt flags). Only fields the model's schema has are sent, so
        `generate_audio` goes to 1.5 pro and 2.0 only."""
        images = self.data_uris(job)
        content = [{"type": "text", "text": job.input["prompt"]}]
        content += [{"type": "image_url", "image_url": {"url": uri}, "role": role}
                    for uri, role in zip(images, FRAME_ROLES)]
        body = {"model": upstream_for(job.spec.upstream, bool(images)), "content": content}
        body.update({wire: job.input[name] for name, wire in TASK_FIELDS.items()
                     if name in job.input})
        if "duration" in job.input:
            body["duration"] = int(job.input["duration"])  # 1.x schemas use "5"/"10" strings
        if "generate_audio" in job.input:
            body["generate_audio"] = bool(job.input["generate_audio"])
        body["watermark"] = False
        return body


def upstream_for(upstream: str, has_image: bool) -> str:
    """Seedance 1.0 lite has separate text-to-video and image-to-video model ids: a run with
    a first frame goes to the `-i2v-` twin of a `-t2v-` id (and vice versa)."""
    if has_image and "-t2v-" in upstream:
        return upstream.replace("-t2v-", "-i2v-")
    if not has_image and "-i2v-" in upstream:
        return upstream.replace("-i2v-", "-t2v-")
    return upstream


def _video_output(task: dict) -> Output:
    """The succeeded task's `content.video_url` (valid 24 h; the worker fetches it now)."""
    content = task.get("content")
    url = content.get("video_url") if isinstance(content, dict) else None
    if not isinstance(url, str) or not url:
        raise ProviderError("The Seedance task succeeded without a video URL.",
                            code="provider_bad_response")
    return Output("video/mp4", url=url)


def _task_error(task: dict) -> ProviderError:
    """A final error for a failed, expired or cancelled task (or an unknown state)."""
    status = task.get("status")
    if status == "failed":
        return error_from_object(task.get("error") or task.get("failure_reason"),
                                 "The Seedance task failed")
    if status == "expired":
        return ProviderError("The Seedance task expired before it ran (execution_expires_after).",
                             code="provider_error")
    if status == "cancelled":
        return ProviderError("The Seedance task was cancelled.", code="provider_error")
    return unknown_status("Seedance", "task", status)
