"""Shared HTTP behaviour of provider clients: one Session, bounded timeouts, and one
place that turns transport failures and HTTP error answers into ProviderError.

Retry policy (DESIGN.md §4): timeouts, connection errors, 429, 408 and 5xx are
retryable, honouring the provider's retry hint; every other 4xx is final, because
sending the same request again would get the same answer.
"""
from __future__ import annotations

import email.utils
import time
from typing import Any

import requests

from .base import ProviderError

#: Seconds to wait for a TCP/TLS connection; the read timeout is per request.
CONNECT_TIMEOUT = 10.0


def parse_retry_after(headers) -> float | None:
    """Seconds from `Retry-After` (seconds or HTTP date) or `retry-after-ms`, if present."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(float(millis) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(parsed.timestamp() - time.time(), 0.0) if parsed else None


class ProviderClient:
    """Base class for one provider's client. Subclasses set `name` and may override
    `auth_headers` and `describe_error` for their own error body format."""

    name = "provider"

    def __init__(self, *, base_url: str, session: requests.Session | None = None,
                 timeout: float = 60.0):
        self.base_url = base_url.rstrip("/")
        self.session = session or requests.Session()
        self.timeout = timeout

    def auth_headers(self) -> dict[str, str]:
        """Headers that authenticate every request."""
        return {}

    def request(self, method: str, path: str, *, seconds_left: float | None = None,
                **kwargs: Any) -> requests.Response:
        """Send one request; raise ProviderError for transport failures and 4xx/5xx."""
        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        read_timeout = self.timeout if seconds_left is None else max(min(self.timeout, seconds_left), 1.0)
        headers = {**self.auth_headers(), **kwargs.pop("headers", {})}
        try:
            response = self.session.request(method, url, headers=headers,
                                            timeout=(CONNECT_TIMEOUT, read_timeout), **kwargs)
        except requests.Timeout:
            raise ProviderError(f"{self.name} did not answer within {read_timeout:.0f} s.",
                                code="provider_timeout", retryable=True) from None
        except requests.ConnectionError as error:
            raise ProviderError(f"Could not reach {self.name}: {type(error).__name__}.",
                                code="provider_unreachable", retryable=True) from None
        if response.status_code >= 400:
            raise self.error_for(response)
        return response

    def json(self, response: requests.Response) -> Any:
        """The response body as JSON; a broken body is retryable (a proxy hiccup, usually)."""
        try:
            return response.json()
        except ValueError:
            raise ProviderError(f"{self.name} sent a response that is not valid JSON.",
                                code="provider_bad_response", retryable=True) from None

    def describe_error(self, response: requests.Response) -> tuple[str, str | None]:
        """(message, code or None) from an error body; override per provider format."""
        try:
            body = response.json()
        except ValueError:
            return response.text[:300] or response.reason or "no details", None
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            return str(error.get("message") or error)[:500], error.get("code")
        return str(error or body)[:500], None

    def error_for(self, response: requests.Response) -> ProviderError:
        """Classify an HTTP error answer as retryable or final, with a stable code."""
        status = response.status_code
        detail, provider_code = self.describe_error(response)
        message = f"{self.name} answered {status}: {detail}"
        if status == 429 or status == 408 or status >= 500:
            return ProviderError(message, code="provider_busy" if status == 429 else "provider_error",
                                 retryable=True, retry_after=parse_retry_after(response.headers))
        if status in (401, 403):
            return ProviderError(message, code="provider_auth")
        return ProviderError(message, code=self.final_code(status, provider_code, detail))

    def final_code(self, status: int, provider_code: str | None, detail: str) -> str:
        """The errorCode of a final 4xx; providers override to spot content-policy refusals."""
        lowered = f"{provider_code or ''} {detail}".lower()
        if any(word in lowered for word in ("safety", "moderation", "content_policy", "sensitive")):
            return "content_rejected"
        return "invalid_input"


class KeyedClient(ProviderClient):
    """A client authenticated by one API key, sent as `Authorization: Bearer <key>` unless a
    subclass overrides `auth_headers`. Subclasses set `default_base_url` and `default_timeout`."""

    default_base_url = ""
    default_timeout = 60.0

    def __init__(self, *, api_key: str, base_url: str | None = None,
                 session: requests.Session | None = None, timeout: float | None = None):
        super().__init__(base_url=base_url or self.default_base_url, session=session,
                         timeout=self.default_timeout if timeout is None else timeout)
        self.api_key = api_key

    def auth_headers(self) -> dict[str, str]:
        """`Authorization: Bearer <key>` on every request."""
        return {"Authorization": f"Bearer {self.api_key}"}
