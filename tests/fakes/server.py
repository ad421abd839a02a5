"""Run a fake provider (a small Flask app) on 127.0.0.1 in a background thread.

Each fake records what it received (`calls`) so tests can assert the translation
(auth header, body fields) and count submits; `behaviour` lets a test script the
next answers (errors, 429s, slow or broken bodies, expiring output URLs).
"""
from __future__ import annotations

import threading
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, request
from werkzeug.serving import make_server


@dataclass
class Call:
    """One request a fake received."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any
    form: dict[str, list[str]]
    files: dict[str, bytes]
    args: dict[str, str]


@dataclass
class FakeState:
    """What a fake has seen and what it has been told to do next."""

    calls: list[Call] = field(default_factory=list)
    #: Per route name: scripted answers consumed in order, e.g. ("status", 429, {"Retry-After": "0"}).
    script: dict[str, deque] = field(default_factory=lambda: defaultdict(deque))
    data: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self) -> Call:
        """Record the current Flask request and return it."""
        call = Call(request.method, request.path, dict(request.headers),
                    request.get_json(silent=True),
                    {key: request.form.getlist(key) for key in request.form},
                    {key: stored.read() for key, stored in request.files.items()},
                    dict(request.args))
        with self.lock:
            self.calls.append(call)
        return call

    def next_scripted(self, route: str):
        """The next scripted answer for `route`, or None to behave normally."""
        with self.lock:
            queue = self.script.get(route)
            return queue.popleft() if queue else None

    def calls_to(self, method: str, path_prefix: str) -> list[Call]:
        """Calls with this method whose path starts with the prefix."""
        return [c for c in self.calls if c.method == method and c.path.startswith(path_prefix)]


class FakeServer:
    """Serve `app` on 127.0.0.1:<free port> until stopped."""

    def __init__(self, app: Flask):
        self.app = app
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:54321 (no trailing slash)."""
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> "FakeServer":
        """Start serving in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        self._server.shutdown()
        self._thread.join(timeout=10)
