"""Replicate predictions (reference/providers.md §4): create, poll, cancel.

Operators add `replicate/<owner>/<name>` models to the catalog with the model's own input
schema; the run's input passes through as `{"input": {...}}`, with the catalog's optional
`input_map` renaming fields (e.g. Runbase's `image_urls` → the model's `image`).

Also home to the small helpers every URL-output adapter shares (fal, upstream Runbase, Ark,
Kling, MiniMax): output URLs → Output, `data:` URIs, outputs on the provider's own API origin,
and the polling schedule.
"""
from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Iterator
from urllib.parse import unquote_to_bytes, urlsplit

from .. import net
from .base import Done, Job, Output, Pending, ProviderError
from .http import ProviderClient, configured_base_url
from .media import sniff_output_type

DEFAULT_BASE_URL = "https://api.replicate.com/v1"
#: The official client takes REPLICATE_BASE_URL as the bare host; a trailing /v1 works too.
API_VERSION = "/v1"
RUNNING = frozenset({"starting", "processing"})
#: Canceled means stopped while running; aborted means Cancel-After passed before it started.
STOPPED = frozenset({"canceled", "aborted"})
#: Seconds between polls: quick at first (images take seconds), then every few seconds.
POLL_SCHEDULE = (1.0, 1.0, 2.0, 2.0, 3.0, 5.0)
#: Types we can store, by file extension of a provider URL.
TYPES_BY_EXTENSION = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
                      ".webp": "image/webp", ".mp4": "video/mp4", ".webm": "video/webm"}
#: Words in a failure message that mean the provider's safety filter refused the request.
SAFETY_WORDS = ("nsfw", "safety", "content policy", "sensitive", "moderation")
THROTTLE_RE = re.compile(r"resets in ~?(\d+(?:\.\d+)?)\s*s", re.IGNORECASE)
#: Provider URLs often expire soon, and videos are large: allow a long download.
OUTPUT_FETCH_SECONDS = 300.0


# --- shared by the URL-output adapters -----------------------------------------------------


def poll_delay(job: Job, polls: int) -> float:
    """Seconds until the next poll: the schedule, never past the run's deadline (so the
    worker notices an expired deadline promptly and cancels upstream)."""
    step = POLL_SCHEDULE[min(polls, len(POLL_SCHEDULE) - 1)]
    return max(min(step, job.seconds_left()), 0.05)


def sniff_type(url: str) -> str | None:
    """The content type a URL's extension suggests, or None (the fetched type decides)."""
    path = urlsplit(url).path.lower()
    for extension, content_type in TYPES_BY_EXTENSION.items():
        if path.endswith(extension):
            return content_type
    return None


def url_output(url: str, content_type: str | None = None) -> Output:
    """One output: `data:` URIs are decoded here, other URLs are left for the worker to
    download through the guarded fetcher."""
    if url.startswith("data:"):
        return _data_uri_output(url)
    return Output(content_type or sniff_type(url), url=url)


def own_origin_outputs(client: ProviderClient, fetcher, done: Done, job: Job, *,
                       retryable: bool = True) -> Done:
    """`done` with every output URL on the provider's API origin downloaded now, through its
    client and with its credentials; other URLs are left for the worker's guarded fetcher.

    The operator chose the API origin, and may have pointed it at a compatible server on a
    private address that the SSRF guard rightly refuses for URLs from anywhere else; its files
    must not fail after the provider has been paid. Pass `retryable=False` from a synchronous
    `start`, where retrying would pay for the generation again.
    """
    outputs = []
    for output in done.outputs:
        if output.url is None or not client.owns(output.url):
            outputs.append(output)
            continue
        try:
            data = client.download(
                output.url, fetcher=fetcher,
                max_bytes=getattr(fetcher, "max_bytes", net.DEFAULT_MAX_BYTES),
                timeout=min(OUTPUT_FETCH_SECONDS, max(job.seconds_left(), 1.0)))
        except ProviderError as error:
            if error.retryable and not retryable:
                raise ProviderError(error.message, code=error.code) from None
            raise
        media_type = sniff_output_type(data)
        if media_type is None:
            # An HTML error page or anything else served with a 200 is not a result.
            raise ProviderError(f"The output from {client.name} is no image or video.",
                                code="output_unavailable")
        outputs.append(Output(media_type, data=data))
    return Done(outputs)


def _data_uri_output(uri: str) -> Output:
    header, _, payload = uri.partition(",")
    content_type = header[5:].split(";")[0] or None
    try:
        data = (base64.b64decode(payload, validate=True) if header.endswith(";base64")
                else unquote_to_bytes(payload))
    except (binascii.Error, ValueError):
        raise ProviderError("The provider sent an unreadable data: URI.",
                            code="provider_bad_response") from None
    return Output(content_type, data=data)


def find_urls(value: Any) -> Iterator[str]:
    """Every http(s) or data: URL in a model's output, however nested (a string, a list,
    or objects such as `{"image": "https://…"}`), in document order."""
    if isinstance(value, str):
        if value.startswith(("https://", "http://", "data:")):
            yield value
    elif isinstance(value, list):
        for item in value:
            yield from find_urls(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from find_urls(item)


def apply_input_map(job: Job) -> dict:
    """The run's input with the catalog's `input_map` renames applied; a target ending in
    `[0]` takes only the first item of a list (for models that want one image)."""
    data = dict(job.input)
    for source, target in job.spec.input_map.items():
        if source not in data:
            continue
        value = data.pop(source)
        if target.endswith("[0]"):
            target = target[:-3]
            if isinstance(value, list):
                if not value:
                    continue
                value = value[0]
        data[target] = value
    return data


# --- Replicate ---------------------------------------------------------------------------


class ReplicateClient(ProviderClient):
    """HTTP client for api.replicate.com: Bearer token, problem-details errors."""

    name = "Replicate"

    def __init__(self, *, token: str, **kwargs: Any):
        super().__init__(**kwargs)
        self._token = token

    def auth_headers(self) -> dict[str, str]:
        """Replicate's current spec uses Bearer (older material used `Token`)."""
        return {"Authorization": f"Bearer {self._token}"}

    def describe_error(self, response) -> tuple[str, str | None]:
        """Problem details: `{"title", "detail", "status"}`."""
        try:
            body = response.json()
        except ValueError:
            return response.text[:300] or response.reason or "no details", None
        if not isinstance(body, dict):
            return str(body)[:500], None
        detail = body.get("detail") or body.get("title") or body
        return str(detail)[:500], body.get("title")

    def error_for(self, response) -> ProviderError:
        """429s carry their wait in the body (`retry_after`, or "resets in ~30s") when
        there is no Retry-After header."""
        error = super().error_for(response)
        if response.status_code == 429 and error.retry_after is None:
            error.retry_after = _throttle_seconds(response)
        return error

    def final_code(self, status: int, provider_code: str | None, detail: str) -> str:
        """404 (unknown model) and 402 (billing) are the operator's problem, not the input's."""
        if status in (402, 404):
            return "provider_error"
        return super().final_code(status, provider_code, detail)


def _throttle_seconds(response) -> float | None:
    """The wait a Replicate 429 body suggests: `retry_after`, or the seconds in its text."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    if isinstance(body.get("retry_after"), (int, float)):
        return max(float(body["retry_after"]), 0.0)
    match = THROTTLE_RE.search(str(body.get("detail", "")))
    return float(match.group(1)) if match else None


class ReplicateAdapter:
    """Runs `replicate/<owner>/<name>` models as Replicate predictions."""

    def __init__(self, client: ReplicateClient, fetcher=None):
        self.client = client
        self.fetcher = fetcher

    @classmethod
    def from_context(cls, spec, context) -> "ReplicateAdapter":
        """Built from REPLICATE_API_TOKEN and REPLICATE_BASE_URL (default: the real API)."""
        token = context.env.get("REPLICATE_API_TOKEN")
        if not token:
            raise ProviderError("REPLICATE_API_TOKEN is not set on this server.",
                                code="provider_auth")
        base_url = configured_base_url(context.env, "REPLICATE_BASE_URL", DEFAULT_BASE_URL,
                                       API_VERSION)
        return cls(ReplicateClient(token=token, base_url=base_url), context.fetcher)

    def start(self, job: Job) -> Done | Pending:
        """Create the prediction; its id is committed by the worker before any poll."""
        model, _, version = job.spec.upstream.partition(":")
        body: dict[str, Any] = {"input": apply_input_map(job)}
        if version:
            path, body["version"] = "/predictions", version
        else:
            path = f"/models/{model}/predictions"
        # Cancel-After makes Replicate stop (and not bill) a prediction we gave up on,
        # even if our own cancel at the deadline never arrives.
        headers = {"Cancel-After": f"{max(int(job.seconds_left()), 1)}s"}
        response = self.client.request("POST", path, seconds_left=job.seconds_left(),
                                       json=body, headers=headers)
        return self._interpret(job, self._prediction(response), polls=0)

    def poll(self, job: Job) -> Done | Pending:
        """Look at the prediction again."""
        response = self.client.request("GET", f"/predictions/{job.upstream_id}",
                                       seconds_left=job.seconds_left())
        polls = int((job.upstream_state or {}).get("polls", 0)) + 1
        return self._interpret(job, self._prediction(response), polls=polls)

    def cancel(self, job: Job) -> None:
        """Ask Replicate to stop the prediction (a finished one comes back unchanged)."""
        self.client.request("POST", f"/predictions/{job.upstream_id}/cancel",
                            seconds_left=min(max(job.seconds_left(), 5.0), 10.0))

    def _prediction(self, response) -> dict:
        prediction = self.client.json(response)
        if not isinstance(prediction, dict) or not prediction.get("id"):
            raise ProviderError("Replicate answered without a prediction id.",
                                code="provider_bad_response", retryable=True)
        return prediction

    def _interpret(self, job: Job, prediction: dict, *, polls: int) -> Done | Pending:
        """Map a prediction's status onto Done, Pending or a final ProviderError."""
        status = prediction.get("status")
        if status in RUNNING:
            return Pending(prediction["id"], poll_delay(job, polls), {"polls": polls})
        if status == "succeeded":
            return own_origin_outputs(self.client, self.fetcher, _succeeded(prediction), job)
        if status == "failed":
            raise _failure(prediction)
        if status in STOPPED:
            raise ProviderError(f"The Replicate prediction was {status} before it finished.",
                                code="provider_error")
        raise ProviderError(f"Replicate sent an unknown prediction status {status!r}.",
                            code="provider_bad_response", retryable=True)


def _succeeded(prediction: dict) -> Done:
    """Outputs of a succeeded prediction; succeeded without files is a failure."""
    if prediction.get("data_removed"):
        raise ProviderError("Replicate already deleted this prediction's output files.",
                            code="output_unavailable")
    urls = list(find_urls(prediction.get("output")))
    if not urls:
        raise ProviderError("The Replicate prediction succeeded but returned no file.",
                            code="provider_bad_response")
    return Done([url_output(url) for url in urls])


def _failure(prediction: dict) -> ProviderError:
    """A failed prediction: a final error, content_rejected when a safety filter said no."""
    message = str(prediction.get("error") or "no details")[:500]
    lowered = message.lower()
    code = "content_rejected" if any(word in lowered for word in SAFETY_WORDS) else "provider_error"
    return ProviderError(f"The Replicate prediction failed: {message}", code=code)
