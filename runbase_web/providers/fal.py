"""fal.ai queue API (docs/providers.md, fal): submit, poll status, fetch the result, cancel.

Operators add `fal/<endpoint-id>` models (e.g. `fal/fal-ai/flux/dev`, upstream
`fal-ai/flux/dev`) with the endpoint's own input schema; the input goes through as the JSON
body, with the catalog's optional `input_map` renames. The submit URL takes the full
endpoint id but the status/result/cancel URLs take only `owner/app`, so we keep the URLs
fal returns on submit (in Pending.state) instead of building them.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from .base import Done, Job, Output, Pending, ProviderError
from .common import (ProviderAdapter, apply_input_map, cancel_seconds, unknown_status,
                     url_output)
from .http import KeyedClient

QUEUE_URLS = ("status_url", "response_url", "cancel_url")
#: Result keys that hold media, single file or list, across image and video endpoints.
MEDIA_KEYS = ("images", "image", "video", "videos")


class FalClient(KeyedClient):
    """HTTP client for fal's queue: `Authorization: Key …`, `{"detail": …}` errors."""

    name = "fal"
    #: The queue API has no version segment: FAL_QUEUE_URL is only tidied up.
    base_url_env = "FAL_QUEUE_URL"
    default_base_url = "https://queue.fal.run"

    def auth_headers(self) -> dict[str, str]:
        """fal wants the `Key` scheme, not `Bearer`."""
        return {"Authorization": f"Key {self.api_key}"}

    def describe_error(self, response) -> tuple[str, str | None]:
        """`{"detail": "text"}` or `{"detail": [{"loc", "msg", "type"}, …]}` (validation)."""
        try:
            body = response.json()
        except ValueError:
            return response.text[:300] or response.reason or "no details", None
        detail = body.get("detail", body) if isinstance(body, dict) else body
        if isinstance(detail, list) and detail and isinstance(detail[0], dict):
            parts = [f"{'.'.join(str(p) for p in item.get('loc', []))}: {item.get('msg', '')}"
                     for item in detail if isinstance(item, dict)]
            return "; ".join(parts)[:500], detail[0].get("type")
        return str(detail)[:500], response.headers.get("X-Fal-Error-Type")

    def error_for(self, response) -> ProviderError:
        """A request that failed inside the model app (X-Fal-Error-Type) is final: asking
        for the same result again gives the same error."""
        error = super().error_for(response)
        if error.retryable and response.headers.get("X-Fal-Error-Type"):
            error.retryable, error.code = False, "provider_error"
        return error


class FalAdapter(ProviderAdapter):
    """Runs `fal/<endpoint-id>` models through fal's queue."""

    CLIENT = FalClient
    CREDENTIALS = {"api_key": "FAL_KEY"}
    RUNNING = frozenset({"IN_QUEUE", "IN_PROGRESS"})

    def start(self, job: Job) -> Pending:
        """Submit to the queue; keep the request id and the URLs fal gave us."""
        response = self.client.request("POST", f"/{job.spec.upstream}", json=apply_input_map(job),
                                       seconds_left=job.seconds_left())
        body = self.client.json(response)
        request_id = body.get("request_id") if isinstance(body, dict) else None
        if not request_id:
            raise ProviderError("fal answered the submit without a request_id.",
                                code="provider_bad_response", retryable=True)
        state = {name: self._queue_url(job, body, name, str(request_id)) for name in QUEUE_URLS}
        return self.pending(job, str(request_id), state)

    def poll(self, job: Job) -> Done | Pending:
        """Status first (202 while queued or running); once COMPLETED, the result."""
        state = dict(job.upstream_state or {})
        body = self.read(job, state["status_url"])
        status = body.get("status")
        if status in self.RUNNING:
            return self.pending(job, job.upstream_id, state)
        if status != "COMPLETED":
            raise unknown_status("fal", "queue", status)
        if body.get("error"):
            raise _failure(str(body["error"]), body.get("error_type"))
        result = self.client.request("GET", state["response_url"], seconds_left=job.seconds_left())
        return self.done(job, _outputs(self.client.json(result)))

    def cancel(self, job: Job) -> None:
        """Ask fal to cancel; a request that already finished is fine as it is."""
        url = (job.upstream_state or {}).get("cancel_url")
        if not url:
            return
        try:
            self.client.request("PUT", url, seconds_left=cancel_seconds(job))
        except ProviderError as error:
            if "ALREADY_COMPLETED" not in error.message:
                raise

    def _queue_url(self, job: Job, body: dict, name: str, request_id: str) -> str:
        """The URL fal returned, if it is on the queue host we call (our key goes with every
        request to it); otherwise the documented one, built from owner/app."""
        given = body.get(name)
        base = urlsplit(self.client.base_url)
        if isinstance(given, str) and urlsplit(given)[:2] == base[:2]:
            return given
        owner_app = "/".join(job.spec.upstream.split("/")[:2])
        suffix = {"status_url": "/status", "response_url": "", "cancel_url": "/cancel"}[name]
        return f"{self.client.base_url}/{owner_app}/requests/{request_id}{suffix}"


def _failure(message: str, error_type: str | None) -> ProviderError:
    """A request that ended in an error: final, content_rejected for safety refusals."""
    kind = str(error_type or "")
    lowered = f"{kind} {message}".lower()
    code = ("content_rejected" if any(w in lowered for w in ("content_policy", "nsfw", "safety"))
            else "provider_error")
    return ProviderError(f"The fal request failed: {message[:500]}"
                         + (f" ({kind})" if kind else ""), code=code)


def _outputs(result: Any) -> list[Output]:
    """Media from a result: `images[].url` (image endpoints) or `video.url` (video ones)."""
    if not isinstance(result, dict):
        raise ProviderError("fal returned a result that is not an object.",
                            code="provider_bad_response")
    flags = result.get("has_nsfw_concepts")
    if isinstance(flags, list) and flags and all(flags):
        # fal's safety checker blanks the images instead of failing the request.
        raise ProviderError("fal's safety checker blocked every image of this request.",
                            code="content_rejected")
    outputs = [output for key in MEDIA_KEYS for output in _media(result.get(key))]
    if not outputs:
        raise ProviderError("The fal request completed but returned no file.",
                            code="provider_bad_response")
    return outputs


def _media(value: Any) -> list[Output]:
    """Outputs from one media field: a file object `{url, content_type}` or a list of them."""
    items = value if isinstance(value, list) else [value] if value else []
    return [url_output(item["url"], _media_type(item.get("content_type")))
            for item in items if isinstance(item, dict) and isinstance(item.get("url"), str)]


def _media_type(content_type: Any) -> str | None:
    """fal's declared type when it names an image or video, else None (sniffed later)."""
    if isinstance(content_type, str) and content_type.startswith(("image/", "video/")):
        return content_type.split(";")[0].strip()
    return None
