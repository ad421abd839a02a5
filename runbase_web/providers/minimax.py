"""MiniMax Hailuo video API: create a task, poll it, then resolve its file to a download URL.

Wire format: docs/providers.md, MiniMax. `Authorization: Bearer <key>`; business errors
come back as HTTP 200 with `base_resp.status_code != 0` (on create, query and retrieve
alike), while gateway failures can still be real 401/429/5xx, so both are checked. No
Retry-After is documented; 1002 (RPM) and 1039 (TPM) mean back off. There is no cancel call
for v1 video tasks.

The first-frame image is downloaded through the guarded fetcher and sent as a data URL
(`first_frame_image` takes a URL or a data URL), so MiniMax never gets a URL from us.
"""
from __future__ import annotations

import logging

import requests

from .base import Done, Job, Output, Pending, ProviderError
from .common import ProviderAdapter
from .http import KeyedClient, json_field
from .media import WEB_IMAGE_TYPES, data_uri

log = logging.getLogger(__name__)

#: The catalog prices one 6 s clip; 6 is also the only duration every Hailuo model takes.
CLIP_SECONDS = 6

#: `Fail` is documented; the official CLI checks `Failed` and knows `Unknown`.
FAILED = frozenset({"Fail", "Failed", "Unknown"})

#: `base_resp.status_code` → (our errorCode, retryable), from the error-code page.
CODES = {
    1000: ("provider_error", True), 1001: ("provider_timeout", True),
    1002: ("provider_busy", True), 1004: ("provider_auth", False),
    1008: ("provider_auth", False),  # balance: the operator's account, not the input
    1013: ("provider_error", True), 1024: ("provider_error", True),
    1026: ("content_rejected", False), 1027: ("content_rejected", False),
    1033: ("provider_error", True), 1039: ("provider_busy", True), 1041: ("provider_busy", True),
    2013: ("invalid_input", False), 2038: ("provider_auth", False),
    2049: ("provider_auth", False),
    2056: ("provider_busy", False),  # a 5-hour usage window: longer than any run's deadline
    2061: ("provider_error", False),  # model not on the plan
}


def error_for_status(status_code, message: str) -> ProviderError:
    """A ProviderError for a non-zero `base_resp.status_code` (unknown codes are final)."""
    mapped, retryable = CODES.get(status_code, ("provider_error", False))
    return ProviderError(f"MiniMax refused the request: {message} (status_code {status_code})",
                         code=mapped, retryable=retryable)


class MiniMaxClient(KeyedClient):
    """HTTP client for the MiniMax API: Bearer key, `base_resp` envelopes."""

    name = "MiniMax"
    base_url_env = "MINIMAX_BASE_URL"
    default_base_url = "https://api.minimax.io/v1"
    #: MINIMAX_BASE_URL is conventionally the bare host; a trailing /v1 is accepted too.
    api_version = "/v1"

    def describe_error(self, response: requests.Response) -> tuple[str, str | None]:
        """(message, code) from `base_resp`, when an HTTP error answer carries one."""
        base_resp = json_field(response, "base_resp")
        if base_resp.get("status_msg"):
            return str(base_resp["status_msg"])[:500], str(base_resp.get("status_code"))
        return super().describe_error(response)

    def checked(self, response: requests.Response) -> dict:
        """The JSON body of an HTTP 200 answer; a non-zero `base_resp.status_code` raises."""
        body = self.json_object(response)
        base_resp = body.get("base_resp") if isinstance(body.get("base_resp"), dict) else {}
        status_code = base_resp.get("status_code", 0)
        if status_code != 0:
            raise error_for_status(status_code, str(base_resp.get("status_msg") or "no details"))
        return body


class HailuoAdapter(ProviderAdapter):
    """Runs Hailuo: create once, poll the task, then turn its `file_id` into a download URL.
    MiniMax has no cancel for v1 video tasks."""

    CLIENT = MiniMaxClient
    CREDENTIALS = {"api_key": "MINIMAX_API_KEY"}
    #: Hailuo clips take a minute or more (the official MCP polls every 20 s).
    POLL_SCHEDULE = (5.0,)
    RUNNING = frozenset({"Preparing", "Queueing", "Processing"})
    #: MiniMax's limit for `first_frame_image`: under 20 MB, JPG/PNG/WebP.
    REFERENCE_MAX_BYTES = 20 * 1024 * 1024
    REFERENCE_TYPES = WEB_IMAGE_TYPES

    def start(self, job: Job) -> Pending:
        """Create the task; the worker commits its `task_id` before polling."""
        response = self.client.request("POST", "/video_generation", json=self.body(job),
                                       seconds_left=job.seconds_left())
        task_id = self.client.checked(response).get("task_id")
        if not task_id:
            raise ProviderError("MiniMax accepted the request but returned no task_id.",
                                code="provider_bad_response")
        return self.pending(job, str(task_id))

    def poll(self, job: Job) -> Done | Pending:
        """Query the task; on `Success` resolve its file to a fresh download URL."""
        response = self.client.request("GET", "/query/video_generation",
                                       params={"task_id": job.upstream_id},
                                       seconds_left=job.seconds_left())
        task = self.client.checked(response)
        status = task.get("status")
        if status in self.RUNNING:
            return self.pending(job, job.upstream_id)
        if status == "Success":
            url = self._download_url(job, task.get("file_id"))
            return self.done(job, [Output("video/mp4", url=url)])
        if status in FAILED:
            raise ProviderError(f"The Hailuo task failed (status {status}).", code="provider_error")
        log.info("Hailuo task %s has the unknown status %r; polling on", job.upstream_id, status)
        return self.pending(job, job.upstream_id)

    def body(self, job: Job) -> dict:
        """model, prompt, a fixed 6 s duration (what the price covers), and the first frame."""
        body = {"model": job.spec.upstream, "prompt": job.input["prompt"],
                "duration": CLIP_SECONDS}
        frames = self.reference_images(job)
        if frames:
            body["first_frame_image"] = data_uri(*frames[0])
        return body

    def _download_url(self, job: Job, file_id) -> str:
        """`files/retrieve` → `file.download_url` (short-lived: the worker fetches it now).
        A failure here is retried by polling again, which asks for a fresh URL."""
        if file_id in (None, ""):
            raise ProviderError("The Hailuo task succeeded without a file_id.",
                                code="provider_bad_response")
        # file_id is a string in the query answer and an int64 here: pass it on as text.
        response = self.client.request("GET", "/files/retrieve",
                                       params={"file_id": str(file_id)},
                                       seconds_left=job.seconds_left())
        file = self.client.checked(response).get("file")
        url = file.get("download_url") if isinstance(file, dict) else None
        if not isinstance(url, str) or not url:
            raise ProviderError("MiniMax returned the file without a download_url.",
                                code="provider_bad_response", retryable=True)
        return url
