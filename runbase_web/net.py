"""The one guarded outbound fetcher: every URL a user or a provider hands us goes through it.

SSRF rules (OWASP SSRF cheat sheet):

* `check_url` is a cheap static check without DNS: http/https only, no userinfo,
  ports 80/443, IP literals in every spelling normalised, internal names refused.
* Validate-then-fetch is broken by DNS rebinding, because the HTTP client would
  resolve the name a second time. So the check that matters happens inside the
  connection itself: `_GuardedConnection._new_conn` resolves the host once, refuses
  if ANY address is blocked, and connects to exactly those checked addresses. The
  URL, Host header and TLS SNI keep the original hostname.
* Redirects are followed by hand (at most `max_redirects`), each hop checked from
  scratch; bodies are streamed against a byte cap and a wall-clock deadline, so a
  5 GB body or a slow drip is aborted at the cap or the deadline.

Logs name the host only: query strings may carry signatures.
"""
from __future__ import annotations

import ipaddress
import logging
import re
import socket
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, HTTPError as Urllib3Error, NewConnectionError
from urllib3.exceptions import NameResolutionError, ReadTimeoutError

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 100 * 1024 * 1024
#: Outgoing webhooks only need to know the receiver got the call.
POST_RESPONSE_CAP = 64 * 1024
CONNECT_TIMEOUT = 10.0
CHUNK_BYTES = 64 * 1024
ALLOWED_PORTS = (80, 443)
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
USER_AGENT = "Runbase-Fetcher/1"

#: Names that reach cloud metadata or the local network whatever DNS says.
BLOCKED_NAMES = {"metadata.google.internal", "metadata", "instance-data"}
BLOCKED_SUFFIXES = (".internal", ".local", ".localdomain", ".home.arpa", ".intranet", ".lan")

#: Explicit list, so the policy does not depend on the Python version's `is_private`.
BLOCKED_NETWORKS = [ipaddress.ip_network(net) for net in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
    "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "::/96",            # unspecified, loopback and the deprecated IPv4-compatible form
    "64:ff9b:1::/48",   # local-use NAT64 (RFC 8215)
    "100::/64", "2001::/32", "2001:db8::/32",  # discard, Teredo, documentation
    "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
)]
NAT64 = ipaddress.ip_network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class FetchError(Exception):
    """A fetch that was refused or failed.

    `code` is one of url_blocked, fetch_failed, too_large, timeout, bad_status;
    `retryable` says whether trying again later may help (timeouts, resets, 429, 5xx).
    """

    def __init__(self, message: str, code: str = "fetch_failed", retryable: bool = False, *,
                 status: int | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.retryable = retryable
        self.status = status


@dataclass(frozen=True)
class Fetched:
    """A downloaded body; `url` is the final URL after redirects."""

    content: bytes
    content_type: str
    url: str


# --- static checks ---------------------------------------------------------------

def _blocked(message: str) -> FetchError:
    return FetchError(message, code="url_blocked")


def check_url(url: str, *, allow_loopback: bool = False) -> None:
    """Refuse a URL that can never be fetched safely, without any DNS lookup.

    Raises FetchError(code="url_blocked"). Passing this check is necessary, not
    sufficient: the resolved addresses are checked again when connecting.
    """
    if not isinstance(url, str) or re.search(r"[\s\\\x00-\x1f\x7f]", url):
        raise _blocked("The URL contains characters that are not allowed.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _blocked("The URL could not be parsed.") from None
    if parts.scheme not in ("http", "https"):
        raise _blocked("Only http and https URLs can be fetched.")
    if "@" in parts.netloc:
        raise _blocked("URLs with a user name or password are not allowed.")
    if not parts.hostname:
        raise _blocked("The URL has no host.")
    if port is not None and port not in ALLOWED_PORTS and not allow_loopback:
        raise _blocked(f"Port {port} is not allowed; only 80 and 443.")
    check_host(parts.hostname, allow_loopback=allow_loopback)


def check_host(host: str, *, allow_loopback: bool = False) -> None:
    """Refuse an internal host name, or an IP literal (any spelling) that is not public."""
    host = _normalise_host(host)
    address = parse_ip(host)
    if address is not None:
        reason = address_blocked(address, allow_loopback=allow_loopback)
        if reason:
            raise _blocked(f"The address {address} is {reason}.")
        return
    if host == "localhost" or host.endswith(".localhost"):
        if allow_loopback:
            return
        raise _blocked("localhost is not allowed.")
    if host in BLOCKED_NAMES or host.endswith(BLOCKED_SUFFIXES):
        raise _blocked(f"The host {host} is an internal name.")
    if "." not in host:
        # Single-label names resolve through the search domains to internal hosts.
        raise _blocked(f"The host {host} is not a fully qualified name.")


def _normalise_host(host: str) -> str:
    """Lower-case, IDNA-encode (as the HTTP client will) and drop a final dot."""
    host = host.strip("[]").lower()
    if "%" in host:
        raise _blocked("Scoped IPv6 addresses are not allowed.")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise _blocked("The host name is not valid.") from None
    host = host[:-1] if host.endswith(".") else host
    if not host:
        raise _blocked("The URL has no host.")
    return host


_NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+")


def parse_ip(host: str) -> IPAddress | None:
    """The address a host string means, in every spelling resolvers accept, else None.

    `2130706433`, `0177.0.0.1`, `0x7f.1` and `127.1` are all 127.0.0.1 to
    inet_aton (and to browsers), so they are read the same way here. A host whose
    last label is numeric but is no valid address is refused outright.
    """
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise _blocked("The IPv6 address is not valid.") from None
    labels = host.split(".")
    if not _NUMERIC_LABEL.fullmatch(labels[-1]):
        return None
    if len(labels) > 4 or not all(_NUMERIC_LABEL.fullmatch(label) for label in labels):
        raise _blocked("The host looks like an IP address but is not a valid one.")
    numbers = [_parse_number(label) for label in labels]
    *leading, last = numbers
    if any(n > 255 for n in leading) or last >= 256 ** (5 - len(numbers)):
        raise _blocked("The host looks like an IP address but is not a valid one.")
    value = last
    for index, number in enumerate(leading):
        value += number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def _parse_number(label: str) -> int:
    """One inet_aton part: 0x-hex, 0-octal or decimal."""
    if label.startswith("0x"):
        return int(label[2:] or "0", 16)
    if len(label) > 1 and label.startswith("0"):
        try:
            return int(label, 8)
        except ValueError:
            raise _blocked("The host looks like an IP address but is not a valid one.") from None
    return int(label)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address really reaches (mapped, NAT64, 6to4), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def effective_address(address: IPAddress) -> IPAddress:
    """The address a connection actually reaches: the embedded IPv4 one for v4-in-v6 forms."""
    if isinstance(address, ipaddress.IPv6Address):
        return _embedded_ipv4(address) or address
    return address


def address_blocked(address: IPAddress, *, allow_loopback: bool = False) -> str | None:
    """Why an address must not be fetched from, or None if it is public."""
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        return "a scoped address"
    address = effective_address(address)
    if address.is_loopback:
        return None if allow_loopback else "a loopback address"
    for network in BLOCKED_NETWORKS:
        if address.version == network.version and address in network:
            return f"in the blocked range {network}"
    if (address.is_private or address.is_reserved or address.is_link_local
            or address.is_multicast or address.is_unspecified or not address.is_global):
        return "not a public address"
    return None


# --- connecting only to checked addresses --------------------------------------------

def resolve_checked(host: str, port: int, *, allow_loopback: bool = False) -> list[tuple]:
    """Resolve `host` once and return its (family, sockaddr) pairs, all of them checked.

    Refuses (url_blocked) if ANY address is blocked, so a name that also points
    inside cannot be used even if the first answer is public.
    """
    check_host(host, allow_loopback=allow_loopback)
    infos = socket.getaddrinfo(host.strip("[]"), port, socket.AF_UNSPEC, socket.SOCK_STREAM)
    if not infos:
        raise socket.gaierror(f"no addresses for {host}")
    targets = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            raise _blocked(f"{host} resolved to a non-IP address.")
        try:
            address = ipaddress.ip_address(sockaddr[0])
        except ValueError:
            raise _blocked(f"{host} resolved to an address that cannot be checked.") from None
        reason = address_blocked(address, allow_loopback=allow_loopback)
        if reason is None and port not in ALLOWED_PORTS and not effective_address(address).is_loopback:
            reason = f"not reachable on port {port} (only loopback may use other ports)"
        if reason:
            raise _blocked(f"{host} resolves to {address}, which is {reason}.")
        targets.append((family, sockaddr))
    return targets


def _connect(targets: list[tuple], timeout, socket_options) -> socket.socket:
    """Connect to the first reachable checked address; never resolves anything again."""
    error: OSError | None = None
    for family, sockaddr in targets:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            for option in socket_options or ():
                sock.setsockopt(*option)
            if timeout is None or isinstance(timeout, (int, float)):
                sock.settimeout(timeout)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            error = exc
            sock.close()
    raise error or OSError("no address to connect to")


class _GuardedConnection:
    """urllib3 connection mixin: resolve, check and connect in one place (no rebinding gap)."""

    allow_loopback = False

    def _new_conn(self) -> socket.socket:
        try:
            targets = resolve_checked(self._dns_host, self.port, allow_loopback=self.allow_loopback)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        try:
            return _connect(targets, self.timeout, self.socket_options)
        except socket.timeout as exc:
            raise ConnectTimeoutError(self, f"Connection to {self.host} timed out.") from exc
        except OSError as exc:
            raise NewConnectionError(self, f"Failed to establish a new connection: {exc}") from exc


def _pool_classes(allow_loopback: bool) -> dict[str, type]:
    """Pool classes for one policy, whose connections go through `_GuardedConnection`."""
    attrs = {"allow_loopback": allow_loopback}
    http = type("GuardedHTTPConnection", (_GuardedConnection, HTTPConnection), attrs)
    https = type("GuardedHTTPSConnection", (_GuardedConnection, HTTPSConnection), attrs)
    return {"http": type("GuardedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http}),
            "https": type("GuardedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https})}


_POOL_CLASSES = {flag: _pool_classes(flag) for flag in (False, True)}


class GuardedAdapter(HTTPAdapter):
    """A requests transport whose every connection is resolved, checked and pinned.

    Proxies are never used: a proxy would do its own resolution, out of our sight.
    """

    def __init__(self, *, allow_loopback: bool = False):
        self.allow_loopback = allow_loopback
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args, **kwargs):
        """Build the pool manager, then swap in the guarded pool classes."""
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOL_CLASSES[self.allow_loopback]

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        """Send without any proxy."""
        return super().send(request, stream=stream, timeout=timeout, verify=verify, cert=cert,
                            proxies=None)


# --- the fetcher ---------------------------------------------------------------------

def host_of(url: str) -> str:
    """The host part of a URL, for logs and messages (never the query string)."""
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


def _same_origin(a: str, b: str) -> bool:
    first, second = urlsplit(a), urlsplit(b)
    return (first.scheme, first.hostname, first.port) == (second.scheme, second.hostname, second.port)


class Fetcher:
    """GET and POST to URLs we do not control, under the SSRF rules above.

    A `session` may be given for its default headers, cookies and TLS settings; the
    transport is always the guarded adapter (the session's own adapters, proxies,
    environment and redirect handling are not used; its trust_env is switched off).
    """

    def __init__(self, *, allow_loopback: bool = False, max_bytes: int = DEFAULT_MAX_BYTES,
                 timeout: float = 30.0, max_redirects: int = 3,
                 session: requests.Session | None = None):
        self.allow_loopback = allow_loopback
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.max_redirects = max_redirects
        self.session = session or requests.Session()
        self.session.trust_env = False  # no proxies or ~/.netrc credentials from the environment
        self._adapter = GuardedAdapter(allow_loopback=allow_loopback)

    def get(self, url: str, *, max_bytes: int | None = None, timeout: float | None = None,
            headers: dict | None = None) -> Fetched:
        """Download `url` (following up to `max_redirects` checked redirects) into memory."""
        limit = self.max_bytes if max_bytes is None else max_bytes
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        current = url
        for _hop in range(self.max_redirects + 1):
            response = self._send("GET", current, headers, deadline)
            try:
                if response.status_code in REDIRECT_STATUSES:
                    following = self._redirect_target(current, response)
                    if not _same_origin(current, following):
                        headers = None  # credentials meant for one host never go to another
                    current = following
                    continue
                self._raise_for_status(current, response)
                content = self._read(response, limit, deadline)
            finally:
                response.close()
            log.info("fetched %d bytes from %s", len(content), host_of(current))
            return Fetched(content, _media_type(response), current)
        raise FetchError(f"More than {self.max_redirects} redirects from {host_of(url)}.")

    def post(self, url: str, *, body: bytes, headers: dict,
             timeout: float | None = None) -> tuple[int, bytes]:
        """POST `body` (for outgoing webhooks): no redirects followed, answer capped at 64 KiB."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        response = self._send("POST", url, headers, deadline, body=body)
        try:
            return response.status_code, self._read(response, POST_RESPONSE_CAP, deadline,
                                                    truncate=True)
        finally:
            response.close()

    def _send(self, method: str, url: str, headers: dict | None, deadline: float,
              body: bytes | None = None) -> requests.Response:
        """One request to one checked URL; the answer's body is left unread."""
        check_url(url, allow_loopback=self.allow_loopback)
        request = requests.Request(method, url, data=body, headers={
            "User-Agent": USER_AGENT, "Accept-Encoding": "identity", **(headers or {})})
        prepared = self.session.prepare_request(request)
        remaining = _remaining(deadline, url)
        try:
            return self._adapter.send(prepared, stream=True,
                                      timeout=(min(CONNECT_TIMEOUT, remaining), remaining),
                                      verify=self.session.verify, cert=self.session.cert)
        except (requests.ConnectTimeout, requests.ReadTimeout) as exc:
            raise FetchError(f"{host_of(url)} did not answer in time.", "timeout", True) from exc
        except requests.exceptions.SSLError as exc:
            raise FetchError(f"TLS with {host_of(url)} failed.", "fetch_failed") from exc
        except requests.RequestException as exc:
            raise FetchError(f"Could not reach {host_of(url)}.", "fetch_failed", True) from exc

    def _redirect_target(self, current: str, response: requests.Response) -> str:
        location = response.headers.get("Location")
        if not location:
            raise FetchError(f"{host_of(current)} redirected without a Location.", "bad_status",
                             status=response.status_code)
        target = urljoin(current, location)
        log.info("redirect from %s to %s", host_of(current), host_of(target))
        return target

    @staticmethod
    def _raise_for_status(url: str, response: requests.Response) -> None:
        status = response.status_code
        if not 200 <= status < 300:
            retryable = status in (408, 429) or status >= 500
            raise FetchError(f"{host_of(url)} answered HTTP {status}.", "bad_status", retryable,
                             status=status)

    def _read(self, response: requests.Response, limit: int, deadline: float,
              truncate: bool = False) -> bytes:
        """Stream the body, aborting past `limit` bytes or the deadline."""
        host = host_of(response.url)
        declared = response.headers.get("Content-Length", "")
        if not truncate and declared.isdigit() and int(declared) > limit:
            raise FetchError(f"{host} sent {declared} bytes; the limit is {limit}.", "too_large")
        body = bytearray()
        try:
            while True:
                _set_read_timeout(response, _remaining(deadline, response.url))
                # read1: at most one socket read, so the deadline is checked between drips.
                chunk = response.raw.read1(CHUNK_BYTES, decode_content=True)
                if not chunk:
                    return bytes(body)
                body += chunk
                if len(body) > limit:
                    if truncate:
                        return bytes(body[:limit])
                    raise FetchError(f"{host} sent more than {limit} bytes.", "too_large")
        except ReadTimeoutError as exc:
            raise FetchError(f"{host} did not send the body in time.", "timeout", True) from exc
        except (Urllib3Error, OSError) as exc:
            raise FetchError(f"The download from {host} broke off.", "fetch_failed", True) from exc


def _remaining(deadline: float, url: str) -> float:
    """Seconds left before `deadline`; a FetchError(timeout) when there are none."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise FetchError(f"{host_of(url)} did not finish in time.", "timeout", True)
    return left


def _set_read_timeout(response: requests.Response, seconds: float) -> None:
    """Bound the next socket read by what is left of the deadline."""
    sock = getattr(getattr(response.raw, "connection", None), "sock", None)
    if sock is not None:
        sock.settimeout(seconds)


def _media_type(response: requests.Response) -> str:
    """`image/png` from `image/png; charset=...`, lower-cased; "" when absent."""
    return response.headers.get("Content-Type", "").split(";")[0].strip().lower()
