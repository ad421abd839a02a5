"""Kling AI video API (kling-v3): text2video / image2video tasks, polled until they end.

Wire format: docs/providers.md, Kling. Auth is an HS256 JWT we sign ourselves from the
access key (`iss`) and the secret key, fresh for every request (stdlib only). Every answer
is the envelope `{"code", "message", "request_id", "data"}`: `code != 0` is an error even
with HTTP 200, and HTTP 429 mixes retryable codes (1302/1303) with fatal ones
(1100–1102, 1304), so errors are classified by `code`, never by the HTTP status alone.
There is no cancel endpoint.

Frame images (`image_urls`: first frame, then optional last frame) are downloaded through
the guarded fetcher and sent as raw base64 without a `data:` prefix, which is what Kling
wants (it calls the prefixed form incorrect); Kling never gets a URL from us.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import requests

from .base import Done, Job, Output, Pending, ProviderError
from .common import ProviderAdapter, job_failed, unknown_status
from .http import ProviderClient, json_body, parse_retry_after
from .media import base64_text

#: Token lifetime and clock slack, as in Kling's own sample.
TOKEN_SECONDS = 1800
CLOCK_SLACK_SECONDS = 5

#: Our `mode` → Kling's. std/pro are documented; 4K is kling-v3's third mode, spelled "4k"
#: like the other lower-case modes (3rd-party material only; verify against the live docs).
MODES = {"std": "std", "pro": "pro", "4K": "4k"}
#: Words in `task_status_msg` that mean a risk-control (content) refusal.
POLICY_WORDS = ("risk", "policy", "sensitive", "safety", "violat", "inappropriate")

#: Kling's documented error codes → (our errorCode, retryable).
CODES = {
    1000: ("provider_auth", False), 1001: ("provider_auth", False),
    1002: ("provider_auth", False), 1003: ("provider_auth", False),
    1004: ("provider_auth", False),  # a fresh token is signed per request, so not a stale one
    1100: ("provider_auth", False), 1101: ("provider_auth", False),  # account, arrears
    1102: ("provider_auth", False), 1103: ("provider_auth", False),  # resource pack, no access
    1200: ("invalid_input", False), 1201: ("invalid_input", False),
    1202: ("provider_error", False), 1203: ("provider_error", False),  # bad method, unknown model
    1300: ("content_rejected", False), 1301: ("content_rejected", False),
    1302: ("provider_busy", True), 1303: ("provider_busy", True),  # rate, concurrency
    1304: ("provider_auth", False),  # IP whitelist
    5000: ("provider_error", True), 5001: ("provider_error", True), 5002: ("provider_error", True),
}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(access_key: str, secret_key: str, now: float | None = None) -> str:
    """An HS256 JWT `{"iss": AK, "exp": now+1800, "nbf": now-5}` signed with the SK."""
    issued = int(time.time() if now is None else now)
    header = {"alg": "HS256", "typ": "JWT"}
    claims = {"iss": access_key, "exp": issued + TOKEN_SECONDS, "nbf": issued - CLOCK_SLACK_SECONDS}
    signing_input = ".".join(_b64url(json.dumps(part, separators=(",", ":")).encode())
                             for part in (header, claims))
    signature = hmac.new(secret_key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(signature)}"


def error_for_code(code, message: str, retry_after: float | None = None) -> ProviderError:
    """A ProviderError for a Kling `code` (unknown non-zero codes are final provider errors)."""
    mapped, retryable = CODES.get(code, ("provider_error", False))
    return ProviderError(f"Kling refused the request: {message} (code {code})", code=mapped,
                         retryable=retryable, retry_after=retry_after if retryable else None)


class KlingClient(ProviderClient):
    """HTTP client for the Kling API: a JWT per request, `{code, message}` envelopes."""

    name = "Kling"
    base_url_env = "KLING_BASE_URL"
    default_base_url = "https://api-singapore.klingai.com/v1"
    #: KLING_BASE_URL is conventionally the bare host; a trailing /v1 is accepted too.
    api_version = "/v1"

    def __init__(self, *, access_key: str, secret_key: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.access_key = access_key
        self.secret_key = secret_key

    def auth_headers(self) -> dict[str, str]:
        """`Authorization: Bearer <jwt>`, signed now (the docs: one token per request)."""
        return {"Authorization": f"Bearer {make_jwt(self.access_key, self.secret_key)}"}

    def error_for(self, response: requests.Response) -> ProviderError:
        """Classify by the envelope's `code` when there is one, else by HTTP status."""
        body = json_body(response)
        if isinstance(body.get("code"), int) and body["code"] != 0:
            return error_for_code(body["code"], str(body.get("message") or "no details"),
                                  parse_retry_after(response.headers))
        return super().error_for(response)

    def describe_error(self, response: requests.Response) -> tuple[str, str | None]:
        """(message, code) from `{"code", "message", "request_id"}`."""
        body = json_body(response)
        if "message" in body:
            return str(body["message"])[:500], str(body.get("code"))
        return super().describe_error(response)

    def envelope(self, response: requests.Response) -> dict:
        """The `data` of a successful answer; `code != 0` (even with HTTP 200) raises."""
        body = self.json_object(response)
        if not isinstance(body.get("code"), int):
            raise ProviderError("Kling answered without a result code.",
                                code="provider_bad_response", retryable=True)
        if body["code"] != 0:
            raise error_for_code(body.get("code"), str(body.get("message") or "no details"))
        data = body.get("data")
        if not isinstance(data, dict) or not data.get("task_id"):
            raise ProviderError("Kling answered without a task.", code="provider_bad_response",
                                retryable=True)
        return data


class KlingAdapter(ProviderAdapter):
    """Runs Kling video models: submit a task once, poll it on the family it was made on.
    Kling documents no cancel endpoint (the task runs to its end)."""

    CLIENT = KlingClient
    CREDENTIALS = {"access_key": "KLING_ACCESS_KEY", "secret_key": "KLING_SECRET_KEY"}
    #: Kling videos take minutes; a look every 5 s is plenty.
    POLL_SCHEDULE = (5.0,)
    RUNNING = frozenset({"submitted", "processing"})
    SUCCEEDED = "succeed"  # sic
    #: Kling's limit for `image` / `image_tail`: 10 MB, jpg/jpeg/png only.
    REFERENCE_MAX_BYTES = 10 * 1024 * 1024
    REFERENCE_TYPES = frozenset({"image/png", "image/jpeg"})

    def start(self, job: Job) -> Pending:
        """Create the task; its id (and family) are committed by the worker before polling."""
        family, body = self.request_for(job)
        response = self.client.request("POST", f"/videos/{family}", json=body,
                                       seconds_left=job.seconds_left())
        return self.pending(job, str(self.client.envelope(response)["task_id"]), {"family": family})

    def poll(self, job: Job) -> Done | Pending:
        """Query the task where it was created: `succeed` has the video, `failed` the reason."""
        family = (job.upstream_state or {}).get("family", "text2video")
        response = self.client.request("GET", f"/videos/{family}/{job.upstream_id}",
                                       seconds_left=job.seconds_left())
        task = self.client.envelope(response)
        return self.outcome(job, job.upstream_id, task.get("task_status"), state={"family": family},
                            outputs=lambda: [_video_output(task)],
                            failure=lambda: _task_failure(task))

    def request_for(self, job: Job) -> tuple[str, dict]:
        """(family, body): image2video with frame images (no `aspect_ratio` there: the video
        follows the image), text2video otherwise. `duration` is a string on the wire."""
        body = {"model_name": job.spec.upstream, "prompt": job.input["prompt"],
                "mode": MODES.get(job.input.get("mode", "std"), "std"),
                "duration": str(job.input.get("duration", 5))}
        frames = self._frames(job)
        if not frames:
            return "text2video", {**body, "aspect_ratio": job.input.get("aspect_ratio", "16:9")}
        body["image"] = frames[0]
        if len(frames) > 1:
            body["image_tail"] = frames[1]
        return "image2video", body

    def _frames(self, job: Job) -> list[str]:
        """The frame images as raw base64 (no `data:` prefix): PNG or JPEG as they are,
        other still images converted to PNG."""
        return [base64_text(data) for data, _kind in self.reference_images(job)]


def _video_output(task: dict) -> Output:
    """The first video of a `succeed` task (kept 30 days; the worker fetches it now)."""
    result = task.get("task_result") if isinstance(task.get("task_result"), dict) else {}
    videos = result.get("videos") if isinstance(result.get("videos"), list) else []
    url = videos[0].get("url") if videos and isinstance(videos[0], dict) else None
    if not isinstance(url, str) or not url:
        raise ProviderError("The Kling task succeeded without a video URL.",
                            code="provider_bad_response")
    return Output("video/mp4", url=url)


def _task_failure(task: dict) -> ProviderError:
    """A failed task: final, `content_rejected` when Kling's risk control said no; or a
    status we do not know (retryable: look again)."""
    status = task.get("task_status")
    if status != "failed":
        return unknown_status("Kling", "task", status)
    return job_failed("The Kling task", task.get("task_status_msg"), POLICY_WORDS)
