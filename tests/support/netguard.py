"""Keep tests off the network: only loopback and unix sockets are allowed.

Tests must be hermetic: a test that silently talks to the internet is slow,
flaky and, on CI's closed network, hangs until a timeout. The guard turns any
such attempt into an immediate, clearly worded ``OSError``.

It patches Python's socket layer only. Native clients that open their own
sockets (libpq under psycopg, the Chromium process) are not affected, which
is what lets them reach the test PostgreSQL server and local pages.
"""

from __future__ import annotations

import ipaddress
import socket

# Proxy variables would route "loopback" traffic to a proxy that reaches out.
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "ftp_proxy")


class NetworkBlocked(OSError):
    """Raised when a test tries to reach an address outside the machine."""


def _refuse(what: object) -> None:
    """Raise the error every blocked call reports."""
    raise NetworkBlocked(f"test tried to reach the network: {what}")


def _as_text(host: object) -> str:
    """Hosts may be given as str or bytes; compare them as text."""
    if isinstance(host, (bytes, bytearray)):
        return bytes(host).decode("ascii", "replace")
    return str(host)


def _is_ip_literal(host: str) -> bool:
    """True if ``host`` is a plain IPv4/IPv6 address, which needs no DNS."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_localhost_name(host: str) -> bool:
    """True for the name 'localhost' (any case, with or without a final dot)."""
    return host.lower().rstrip(".") == "localhost"


def is_loopback_host(host: object) -> bool:
    """True if ``host`` is 'localhost' or an address in 127.0.0.0/8 or ::1."""
    text = _as_text(host)
    if _is_localhost_name(text):
        return True
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return False  # a hostname: we refuse to resolve it
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback too
    return ip.is_loopback


def _describe(address: object) -> str:
    """'host:port' for inet addresses, repr() for anything else."""
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{_as_text(address[0])}:{address[1]}"
    return repr(address)


def check_address(family: int, address: object) -> None:
    """Raise NetworkBlocked unless ``address`` is a unix or loopback address."""
    if family == socket.AF_UNIX:
        return
    inet = family in (socket.AF_INET, socket.AF_INET6)
    if inet and isinstance(address, tuple) and address and is_loopback_host(address[0]):
        return
    _refuse(_describe(address))


def _check_lookup(host: object) -> None:
    """Refuse name lookups that would need DNS (hostnames other than localhost)."""
    if host is None:
        return  # passive/wildcard lookups stay on this machine
    text = _as_text(host)
    if not (_is_ip_literal(text) or _is_localhost_name(text)):
        _refuse(text)


def _guard_method(original, address_index: int):
    """Wrap a socket method so its address argument is checked first."""
    def guarded(self, *args, **kwargs):
        if args:  # without an address, let the original raise its TypeError
            check_address(self.family, args[address_index])
        return original(self, *args, **kwargs)
    guarded.__name__ = original.__name__
    guarded.__doc__ = original.__doc__
    return guarded


def _guard_lookup(original):
    """Wrap a resolver function so its host argument is checked first."""
    def guarded(host, *args, **kwargs):
        _check_lookup(host)
        return original(host, *args, **kwargs)
    guarded.__name__ = original.__name__
    guarded.__doc__ = original.__doc__
    return guarded


def _guard_create_connection(original):
    """Wrap socket.create_connection so the target host is checked first."""
    def create_connection(address, *args, **kwargs):
        if not is_loopback_host(address[0]):
            _refuse(_describe(address))
        return original(address, *args, **kwargs)
    create_connection.__doc__ = original.__doc__
    return create_connection


def block_non_loopback(monkeypatch) -> None:
    """Make every network access outside this machine raise NetworkBlocked.

    Allowed: AF_UNIX sockets and TCP/UDP to 127.0.0.0/8, ::1 and 'localhost'.
    Hostnames other than 'localhost' are refused at lookup time instead of
    being resolved. Everything is undone by ``monkeypatch`` at teardown.
    """
    sock = socket.socket
    monkeypatch.setattr(sock, "connect", _guard_method(sock.connect, 0))
    monkeypatch.setattr(sock, "connect_ex", _guard_method(sock.connect_ex, 0))
    # sendto(data, address) or sendto(data, flags, address): UDP needs no connect.
    monkeypatch.setattr(sock, "sendto", _guard_method(sock.sendto, -1))
    monkeypatch.setattr(socket, "create_connection",
                        _guard_create_connection(socket.create_connection))
    for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex"):
        monkeypatch.setattr(socket, name, _guard_lookup(getattr(socket, name)))
    for var in _PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.upper(), raising=False)
