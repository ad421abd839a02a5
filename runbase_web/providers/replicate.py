"""Replicate predictions (docs/providers.md, Replicate): create, poll, cancel, callbacks.

Operators add `replicate/<owner>/<name>` models to the catalog with the model's own input
schema; the run's input passes through as `{"input": {...}}`, with the catalog's optional
`input_map` renaming fields (e.g. Runbase's `image_urls` → the model's `image`).

Callbacks: with a callback URL, the create asks for a webhook on the `completed` event only
(`webhook`, `webhook_events_filter`). Replicate POSTs the prediction object (the body of
`GET /predictions/{id}`), signed per Standard Webhooks with the account's secret, which we
fetch from `GET /webhooks/default/secret` and cache.
"""
from __future__ import annotations

import hashlib
import re
from typing import Any, Mapping

from ..webhook_signatures import KeyCache, SignatureError, keys_unavailable, verify_standard
from .base import Callback, Done, Job, Output, Pending, ProviderError
from .common import (ProviderAdapter, apply_input_map, callback_json, cancel_seconds, find_urls,
                     job_failed, unknown_status, url_output)
from .http import KeyedClient, json_body

#: Canceled means stopped while running; aborted means Cancel-After passed before it started.
STOPPED = frozenset({"canceled", "aborted"})
#: Words in a failure message that mean the provider's safety filter refused the request.
SAFETY_WORDS = ("nsfw", "safety", "content policy", "sensitive", "moderation")
THROTTLE_RE = re.compile(r"resets in ~?(\d+(?:\.\d+)?)\s*s", re.IGNORECASE)
#: The webhook events asked for: only the end of a prediction (succeeded, failed, canceled).
WEBHOOK_EVENTS = ["completed"]
#: Seconds for fetching the webhook signing secret (asked while a callback waits).
SECRET_FETCH_SECONDS = 10.0
#: The account's signing secret changes only when rotated; a failing check refetches it.
SECRET_CACHE = KeyCache(max_age=3600.0)


class ReplicateClient(KeyedClient):
    """HTTP client for api.replicate.com: Bearer token (Replicate's current spec; older
    material used `Token`), problem-details errors."""

    name = "Replicate"
    base_url_env = "REPLICATE_BASE_URL"
    default_base_url = "https://api.replicate.com/v1"
    #: The official client takes REPLICATE_BASE_URL as the bare host; a trailing /v1 works too.
    api_version = "/v1"

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
    body = json_body(response)
    if isinstance(body.get("retry_after"), (int, float)):
        return max(float(body["retry_after"]), 0.0)
    match = THROTTLE_RE.search(str(body.get("detail", "")))
    return float(match.group(1)) if match else None


class ReplicateAdapter(ProviderAdapter):
    """Runs `replicate/<owner>/<name>` models as Replicate predictions."""

    CLIENT = ReplicateClient
    CREDENTIALS = {"api_key": "REPLICATE_API_TOKEN"}
    RUNNING = frozenset({"starting", "processing"})
    CALLBACKS = True

    def start(self, job: Job) -> Done | Pending:
        """Create the prediction; its id is committed by the worker before any poll."""
        model, _, version = job.spec.upstream.partition(":")
        body: dict[str, Any] = {"input": apply_input_map(self.own_files_inline(job))}
        if version:
            path, body["version"] = "/predictions", version
        else:
            path = f"/models/{model}/predictions"
        if self.callback_url:
            body["webhook"] = self.callback_url
            body["webhook_events_filter"] = WEBHOOK_EVENTS
        # Cancel-After makes Replicate stop (and not bill) a prediction we gave up on,
        # even if our own cancel at the deadline never arrives.
        headers = {"Cancel-After": f"{max(int(job.seconds_left()), 1)}s"}
        response = self.client.request("POST", path, seconds_left=job.seconds_left(),
                                       json=body, headers=headers)
        return self._interpret(job, self.client.json_object(response))

    def poll(self, job: Job) -> Done | Pending:
        """Look at the prediction again."""
        return self._interpret(job, self.read(job, f"/predictions/{job.upstream_id}"))

    def cancel(self, job: Job) -> None:
        """Ask Replicate to stop the prediction (a finished one comes back unchanged)."""
        self.client.request("POST", f"/predictions/{job.upstream_id}/cancel",
                            seconds_left=cancel_seconds(job))

    @classmethod
    def callbacks_available(cls, env: Mapping[str, str]) -> bool:
        """The signing secret is fetched with the API token, so callbacks need it set."""
        return bool(env.get("REPLICATE_API_TOKEN"))

    @classmethod
    def verify_callback(cls, env: Mapping[str, str], headers: Mapping[str, str], body: bytes,
                        now: float) -> Callback:
        """A Standard Webhooks signature with the account's secret; the body is a prediction."""
        client = ReplicateClient.configured(env, api_key=env.get("REPLICATE_API_TOKEN", ""))
        # Per API origin and token: a token of another account has another secret.
        cache_key = (client.base_url, hashlib.sha256(client.api_key.encode()).hexdigest())
        message_id = SECRET_CACHE.verified(
            cache_key, lambda: _signing_secret(client),
            lambda secret: verify_standard(secret, headers, body, now=now))
        prediction = callback_json(body)
        if not isinstance(prediction.get("id"), str) or not prediction["id"]:
            raise SignatureError("The callback holds no prediction id.", code="bad_body",
                                 status=400)
        return Callback(message_id, prediction["id"], prediction)

    def called_back(self, job: Job, body: dict) -> Done | None:
        """The prediction in the callback, read like a poll's answer; one that is still
        running (not asked for) or another prediction is left to a poll."""
        if body.get("id") != job.upstream_id or body.get("status") in self.RUNNING:
            return None
        return self._interpret(job, body)

    def _interpret(self, job: Job, prediction: dict) -> Done | Pending:
        """Map a prediction's status onto Done, Pending or a final ProviderError; an answer
        without a prediction id is a broken one."""
        if not prediction.get("id"):
            raise ProviderError("Replicate answered without a prediction id.",
                                code="provider_bad_response", retryable=True)
        return self.outcome(job, prediction["id"], prediction.get("status"),
                            outputs=lambda: _succeeded(prediction),
                            failure=lambda: _failure(prediction))


def _signing_secret(client: ReplicateClient) -> str:
    """The account's webhook signing secret (`{"key": "whsec_..."}`)."""
    try:
        response = client.request("GET", "/webhooks/default/secret",
                                  seconds_left=SECRET_FETCH_SECONDS)
        key = client.json_object(response).get("key")
    except ProviderError as error:
        raise keys_unavailable(error.message) from None
    if not isinstance(key, str) or not key:
        raise keys_unavailable("Replicate answered without a key.")
    return key


def _succeeded(prediction: dict) -> list[Output]:
    """Outputs of a succeeded prediction; succeeded without files is a failure."""
    if prediction.get("data_removed"):
        raise ProviderError("Replicate already deleted this prediction's output files.",
                            code="output_unavailable")
    urls = list(find_urls(prediction.get("output")))
    if not urls:
        raise ProviderError("The Replicate prediction succeeded but returned no file.",
                            code="provider_bad_response")
    return [url_output(url) for url in urls]


def _failure(prediction: dict) -> ProviderError:
    """Why a prediction ended without outputs: failed (final; content_rejected when a safety
    filter said no), stopped, or a status we do not know (retryable: look again)."""
    status = prediction.get("status")
    if status in STOPPED:
        return ProviderError(f"The Replicate prediction was {status} before it finished.",
                             code="provider_error")
    if status != "failed":
        return unknown_status("Replicate", "prediction", status)
    return job_failed("The Replicate prediction", prediction.get("error"), SAFETY_WORDS)
