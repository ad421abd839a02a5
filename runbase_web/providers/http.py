"""Shared HTTP behaviour of provider clients: one Session, bounded timeouts, and one
place that turns transport failures and HTTP error answers into ProviderError.

Retry policy (docs/providers.md, "Errors"): timeouts, connection errors, 429, 408 and 5xx are
retryable, honouring the provider's retry hint; every other 4xx is final, because
sending the same request again would get the same answer.

Also the one place that reads a provider's base-URL variable (`configured_base_url`) and
the one rule for downloading provider files (`ProviderClient.download`): a URL on the
configured API origin goes through the client, with its credentials; any other URL goes
through the SSRF-guarded fetcher, without them.
"""
from __future__ import annotations

import email.utils
import os
import re
import threading
import time
from http.cookiejar import DefaultCookiePolicy
from typing import Any, Mapping
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from .. import metrics, net
from .base import ProviderError

#: Seconds to wait for a TCP/TLS connection; the read timeout is per request.
CONNECT_TIMEOUT = 10.0
#: Redirects a download from the API origin may take (each hop re-checked by origin).
MAX_DOWNLOAD_REDIRECTS = 3
DOWNLOAD_CHUNK_BYTES = 64 * 1024
#: A path segment that names an API version: v1, v3, v1beta, v1alpha2, ...
VERSION_SEGMENT = re.compile(r"v\d+(?:(?:alpha|beta)\d*)?", re.IGNORECASE)


def configured_base_url(env: Mapping[str, str], variable: str, default: str,
                        version: str = "") -> str:
    """The base URL for a provider from `variable` (else `default`), ending in the API
    version path `version` (e.g. "/v1", "/api/v3") whether or not the operator wrote it.

    SDKs disagree on the form: OpenAI's includes `/v1`, Replicate's and Google's take the
    bare host. Both forms are accepted, so setting a variable the way the provider's own
    SDK documents it works. A URL that already ends in some version (`/v1` for Gemini's
    stable API, `/api/v2`) is kept as the operator's choice.
    """
    value = (env.get(variable) or "").strip() or default
    parts = urlsplit(value)
    segments = [segment for segment in parts.path.split("/") if segment]
    wanted = [segment for segment in version.split("/") if segment]
    if wanted and not _ends_with_version(segments, wanted):
        # "…/api" for "/api/v3" gets only the missing "/v3".
        lowered = [segment.lower() for segment in segments]
        overlap = next((k for k in range(len(wanted) - 1, 0, -1)
                        if lowered[-k:] == [w.lower() for w in wanted[:k]]), 0)
        segments += wanted[overlap:]
    path = "/" + "/".join(segments) if segments else ""
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _ends_with_version(segments: list[str], wanted: list[str]) -> bool:
    """True if the path ends like `wanted`, with any version in the last segment."""
    tail = segments[-len(wanted):] if len(segments) >= len(wanted) else []
    return bool(tail) and [s.lower() for s in tail[:-1]] == [w.lower() for w in wanted[:-1]] \
        and VERSION_SEGMENT.fullmatch(tail[-1]) is not None


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL, with the scheme's default port filled in."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ("", "", None)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), port or {"http": 80, "https": 443}.get(scheme)


def json_body(response: requests.Response) -> dict:
    """The JSON object an answer carries, or {} when it carries none (no JSON, or JSON that
    is no object): for reading error answers, which may be anything."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def json_field(response: requests.Response, key: str) -> dict:
    """The object under `key` of an answer's JSON body (an `error` or `base_resp` envelope),
    or {}."""
    value = json_body(response).get(key)
    return value if isinstance(value, dict) else {}


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


#: Connections kept open per provider origin: the worker's threads share them.
POOL_CONNECTIONS = 32
_POOLS: dict[str, requests.Session] = {}
_POOLS_LOCK = threading.Lock()


def pooled_session(base_url: str) -> requests.Session:
    """The keep-alive session for `base_url`'s origin, shared by every client in this
    process: a run's submit, polls and downloads, and other runs', reuse connections
    instead of paying DNS, TCP and TLS for each request. Cookies are never kept, so no
    answer to one request changes the next (credentials go in each request's headers)."""
    parts = urlsplit(base_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    with _POOLS_LOCK:
        session = _POOLS.get(origin)
        if session is None:
            session = _origin_session(origin)
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=POOL_CONNECTIONS)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
            _POOLS[origin] = session
        return session


def _origin_session(origin: str) -> requests.Session:
    """A Session that read the environment once, for its one origin.

    By default requests reads proxies (HTTPS_PROXY, NO_PROXY), the CA bundle and ~/.netrc
    from the environment on every request: a tenth of a worker's CPU per run. For one
    origin the answer never changes, so take the proxies and CA bundle once and switch the
    per-request lookup off. ~/.netrc is left out on purpose: a matching entry would replace
    the provider key we send in the Authorization header.
    """
    session = requests.Session()
    session.trust_env = False
    session.proxies = requests.utils.get_environ_proxies(origin)
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    return session


class ProviderClient:
    """Base class for one provider's client. Subclasses set `name`, where the base URL comes
    from (`base_url_env`, `default_base_url`, `api_version`) and may override `auth_headers`
    and `describe_error` for their own error body format."""

    name = "provider"
    #: The variable that may override the base URL (empty: the default is fixed).
    base_url_env = ""
    default_base_url = ""
    #: The API version path the base URL must end in (see configured_base_url).
    api_version = ""
    #: Read timeout of one request; the run's deadline bounds it further.
    default_timeout = 60.0

    def __init__(self, *, base_url: str | None = None, session: requests.Session | None = None,
                 timeout: float | None = None):
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self.session = session or pooled_session(self.base_url)
        self.timeout = self.default_timeout if timeout is None else timeout

    @classmethod
    def configured(cls, env: Mapping[str, str], **credentials: str) -> "ProviderClient":
        """A client for the base URL the provider variables name (else the default), with
        these credentials (the constructor's keyword arguments)."""
        base_url = configured_base_url(env, cls.base_url_env, cls.default_base_url,
                                       cls.api_version) if cls.base_url_env else None
        return cls(base_url=base_url, **credentials)

    def auth_headers(self) -> dict[str, str]:
        """Headers that authenticate every request."""
        return {}

    def owns(self, url: str) -> bool:
        """True if `url` is on this client's API origin (scheme, host and port of the base
        URL): such URLs may get our credentials and are fetched like API calls."""
        return origin(url) == origin(self.base_url) and origin(url)[1] != ""

    def download_headers(self, url: str) -> dict[str, str]:
        """Headers for a file download from another origin (none: credentials stay home)."""
        return {}

    def download(self, url: str, *, fetcher, max_bytes: int, timeout: float,
                 what: str = "The output") -> bytes:
        """Download a provider file: from the API origin through this client with its
        credentials, from anywhere else through the guarded fetcher without them.

        The operator chose the API origin (a base URL may name a private compatible server,
        which the SSRF guard would refuse), so it is trusted like every API call; redirects
        from it are followed one hop at a time, and one that leaves the origin continues
        through the fetcher. Failures are `output_unavailable`, retryable when transient.
        """
        deadline = time.monotonic() + timeout
        for _hop in range(MAX_DOWNLOAD_REDIRECTS + 1):
            if not self.owns(url):
                return self._fetch_elsewhere(url, fetcher, max_bytes, deadline, what)
            try:
                response = self.request("GET", url, seconds_left=_left(deadline, what),
                                        stream=True, allow_redirects=False)
            except ProviderError as error:
                raise _unavailable(what, error.message, error.retryable) from None
            with response:
                if response.status_code not in net.REDIRECT_STATUSES:
                    return self._read_capped(response, max_bytes, deadline, what)
                location = response.headers.get("Location")
                if not location:
                    raise _unavailable(what, f"{self.name} redirected without a Location.", False)
                url = urljoin(url, location)
        raise _unavailable(what, f"more than {MAX_DOWNLOAD_REDIRECTS} redirects.", False)

    def _fetch_elsewhere(self, url: str, fetcher, max_bytes: int, deadline: float,
                         what: str) -> bytes:
        """A URL off the API origin: the guarded fetcher, with only `download_headers`."""
        if fetcher is None:
            raise _unavailable(what, "no fetcher is configured.", False)
        try:
            return fetcher.get(url, max_bytes=max_bytes, timeout=_left(deadline, what),
                               headers=self.download_headers(url) or None).content
        except net.FetchError as error:
            raise _unavailable(what, error.message, error.retryable) from None

    def _read_capped(self, response: requests.Response, max_bytes: int, deadline: float,
                     what: str) -> bytes:
        """The streamed body, refused past `max_bytes` or the deadline."""
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise _unavailable(
                what, f"{self.name} sent {declared} bytes; the limit is {max_bytes}.", False)
        body = bytearray()
        try:
            for chunk in response.iter_content(DOWNLOAD_CHUNK_BYTES):
                body += chunk
                if len(body) > max_bytes:
                    raise _unavailable(
                        what, f"{self.name} sent more than {max_bytes} bytes.", False)
                _left(deadline, what)
        except requests.RequestException:
            raise _unavailable(what, f"the download from {self.name} broke off.", True) from None
        return bytes(body)

    def request(self, method: str, path: str, *, seconds_left: float | None = None,
                **kwargs: Any) -> requests.Response:
        """Send one request; raise ProviderError for transport failures and 4xx/5xx."""
        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        read_timeout = self.timeout if seconds_left is None else max(min(self.timeout, seconds_left), 1.0)
        headers = {**self.auth_headers(), **kwargs.pop("headers", {})}
        started = time.monotonic()
        try:
            response = self.session.request(method, url, headers=headers,
                                            timeout=(CONNECT_TIMEOUT, read_timeout), **kwargs)
        except requests.Timeout:
            self._observe("timeout", started)
            raise ProviderError(f"{self.name} did not answer within {read_timeout:.0f} s.",
                                code="provider_timeout", retryable=True) from None
        except requests.ConnectionError as error:
            self._observe("unreachable", started)
            raise ProviderError(f"Could not reach {self.name}: {type(error).__name__}.",
                                code="provider_unreachable", retryable=True) from None
        self._observe(metrics.http_outcome(response.status_code), started)
        if response.status_code >= 400:
            raise self.error_for(response)
        return response

    def _observe(self, outcome: str, started: float) -> None:
        """Count the request in the provider metrics, labelled by this client's module
        (openai, gemini, ark, ...): stable, unlike the display `name`."""
        provider = type(self).__module__.rsplit(".", 1)[-1]
        metrics.observe_provider_request(provider, outcome, time.monotonic() - started)

    def json(self, response: requests.Response) -> Any:
        """The response body as JSON; a broken body is retryable (a proxy hiccup, usually)."""
        try:
            return response.json()
        except ValueError:
            raise ProviderError(f"{self.name} sent a response that is not valid JSON.",
                                code="provider_bad_response", retryable=True) from None

    def json_object(self, response: requests.Response) -> dict:
        """The response body as a JSON object; anything else is retryable, like a broken body."""
        body = self.json(response)
        if not isinstance(body, dict):
            raise ProviderError(f"{self.name} sent an answer that is not a JSON object.",
                                code="provider_bad_response", retryable=True)
        return body

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
    subclass overrides `auth_headers`."""

    def __init__(self, *, api_key: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.api_key = api_key

    def auth_headers(self) -> dict[str, str]:
        """`Authorization: Bearer <key>` on every request."""
        return {"Authorization": f"Bearer {self.api_key}"}


def _left(deadline: float, what: str) -> float:
    """Seconds left for a download; a retryable failure when there are none."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise _unavailable(what, "it did not finish in time.", True)
    return left


def _unavailable(what: str, detail: str, retryable: bool) -> ProviderError:
    """A download failure: the provider's file is (for now) out of reach."""
    return ProviderError(f"{what} could not be downloaded: {detail}", code="output_unavailable",
                         retryable=retryable)
