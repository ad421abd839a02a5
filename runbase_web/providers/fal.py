"""fal.ai queue API (docs/providers.md, fal): submit, poll status, fetch the result, cancel,
callbacks.

Operators add `fal/<endpoint-id>` models (e.g. `fal/fal-ai/flux/dev`, upstream
`fal-ai/flux/dev`) with the endpoint's own input schema; the input goes through as the JSON
body, with the catalog's optional `input_map` renames. The submit URL takes the full
endpoint id but the status/result/cancel URLs take only `owner/app`, so we keep the URLs
fal returns on submit (in Pending.state) instead of building them.

Callbacks: with a callback URL, the submit carries `?fal_webhook=<url>`. fal POSTs
`{"request_id", "gateway_request_id", "status": "OK"|"ERROR", "payload", "error"}` when the
request ends, signed with Ed25519: `X-Fal-Webhook-Signature` (hex) over
`{request id}\n{user id}\n{timestamp}\n{hex SHA-256 of the body}` from the
`X-Fal-Webhook-Request-Id`, `-User-Id` and `-Timestamp` headers, checked against the public
keys fal publishes as a JSON Web Key Set (FAL_WEBHOOK_JWKS_URL overrides its address).
"""
from __future__ import annotations

import hashlib
from typing import Any, Mapping
from urllib.parse import urlsplit

import requests

from ..webhook_signatures import (KeyCache, SignatureError, check_timestamp, ed25519_keys,
                                  keys_unavailable, unsigned, verify_ed25519)
from .base import Callback, Done, Job, Output, Pending, ProviderError
from .common import (ProviderAdapter, apply_input_map, callback_json, cancel_seconds,
                     unknown_status, url_output)
from .http import CONNECT_TIMEOUT, KeyedClient, configured_base_url, pooled_session

QUEUE_URLS = ("status_url", "response_url", "cancel_url")
#: Result keys that hold media, single file or list, across image and video endpoints.
MEDIA_KEYS = ("images", "image", "video", "videos")
#: fal's webhook signing keys (a JSON Web Key Set); FAL_WEBHOOK_JWKS_URL overrides it.
JWKS_URL_ENV = "FAL_WEBHOOK_JWKS_URL"
DEFAULT_JWKS_URL = "https://rest.alpha.fal.ai/.well-known/jwks.json"
#: Seconds for fetching the key set (asked while a callback waits).
JWKS_FETCH_SECONDS = 10.0
#: fal suggests caching its key set for up to a day; a failing check refetches it sooner.
JWKS_CACHE = KeyCache(max_age=24 * 3600.0)
#: The callback headers fal signs with.
SIGNATURE_HEADERS = ("x-fal-webhook-request-id", "x-fal-webhook-user-id",
                     "x-fal-webhook-timestamp", "x-fal-webhook-signature")
#: Words in a failed request's error that mean fal's or the model's safety filter said no.
SAFETY_WORDS = ("content_policy", "nsfw", "safety")


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
    CALLBACKS = True

    def start(self, job: Job) -> Pending:
        """Submit to the queue; keep the request id and the URLs fal gave us."""
        params = {"fal_webhook": self.callback_url} if self.callback_url else None
        response = self.client.request("POST", f"/{job.spec.upstream}", json=apply_input_map(self.own_files_inline(job)),
                                       params=params, seconds_left=job.seconds_left())
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

    @classmethod
    def verify_callback(cls, env: Mapping[str, str], headers: Mapping[str, str], body: bytes,
                        now: float) -> Callback:
        """fal's Ed25519 signature, by a key of its published key set. fal sends no message
        id, so it is made of what the signature covers: request id, timestamp and body hash
        (a replay repeats all three; fal's own retries are signed anew, later)."""
        request_id, user_id, stamp, signature = (headers.get(name, "") for name in SIGNATURE_HEADERS)
        if not (request_id and user_id and stamp and signature):
            raise unsigned("X-Fal-Webhook-Request-Id, -User-Id, -Timestamp and -Signature")
        check_timestamp(stamp, now=now)
        digest = hashlib.sha256(body).hexdigest()
        message = "\n".join([request_id, user_id, stamp, digest]).encode()
        url = configured_base_url(env, JWKS_URL_ENV, DEFAULT_JWKS_URL)
        JWKS_CACHE.verified(url, lambda: _fetch_jwks(url),
                       lambda keys: verify_ed25519(keys, signature, message))
        payload = callback_json(body)
        if payload.get("request_id", request_id) != request_id:
            raise SignatureError("The callback's body is about another request than its headers.",
                                 code="bad_body", status=400)
        return Callback(f"{request_id}:{stamp}:{digest[:32]}", request_id, payload)

    def called_back(self, job: Job, body: dict) -> Done | None:
        """OK with the result in `payload`: Done; ERROR: the request's failure. A result left
        out of the callback (`payload_error`: it was no valid JSON) is fetched by a poll."""
        if body.get("request_id") != job.upstream_id:
            return None
        status = body.get("status")
        if status == "ERROR":
            raise _callback_failure(body)
        if status == "OK" and isinstance(body.get("payload"), dict):
            return self.done(job, _outputs(body["payload"]))
        return None

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


def _fetch_jwks(url: str) -> list:
    """fal's Ed25519 public keys, from the key set at `url` (the operator's choice, so
    fetched like an API call, not through the guard for URLs from elsewhere)."""
    try:
        response = pooled_session(url).get(url, timeout=(CONNECT_TIMEOUT, JWKS_FETCH_SECONDS))
        response.raise_for_status()
        document = response.json()
    except (requests.RequestException, ValueError) as error:
        raise keys_unavailable(f"{type(error).__name__} from {url}") from None
    return ed25519_keys(document)


def _callback_failure(body: dict) -> ProviderError:
    """An ERROR callback as the same final error a poll of that request would give: the
    model's 422 (its validation) is invalid_input, a safety refusal content_rejected."""
    error = str(body.get("error") or "no details")
    payload = body.get("payload") if isinstance(body.get("payload"), dict) else {}
    detail = payload.get("detail")
    kind = None
    if isinstance(detail, list):
        items = [item for item in detail if isinstance(item, dict)]
        kind = items[0].get("type") if items else None
        detail = "; ".join(f"{'.'.join(str(p) for p in item.get('loc', []))}: {item.get('msg', '')}"
                           for item in items)
    message = f"{error}: {detail}" if detail else error
    failure = _failure(message, kind)
    if failure.code == "provider_error" and "422" in error:
        failure.code = "invalid_input"
    return failure


def _failure(message: str, error_type: str | None) -> ProviderError:
    """A request that ended in an error: final, content_rejected for safety refusals."""
    kind = str(error_type or "")
    lowered = f"{kind} {message}".lower()
    code = "content_rejected" if any(w in lowered for w in SAFETY_WORDS) else "provider_error"
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
