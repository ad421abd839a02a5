"""A small fake of Replicate's predictions API for bench/inflight.py, in a process of its own.

Speaks the wire format the Replicate adapter uses (providers/replicate.py): a create
(POST /v1/models/<owner>/<name>/predictions) answers at once with a prediction id and
status "starting"; GET /v1/predictions/<id> answers "processing" until `--job-seconds`
after the create, then "succeeded" with one output URL on this server (so the worker
downloads it through the provider client, as it does for a provider's own origin).

It keeps one float per prediction and counters, nothing else, so it stays cheap with
tens of thousands of jobs. GET /_stats returns the counters and, for runs whose prompt
starts with "probe-", the time (time.time()) the create arrived.

Usage: python bench/fake_async_provider.py --job-seconds 120  (prints "port N" when ready)
"""
from __future__ import annotations

import argparse
import io
import itertools
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "r8-bench"
_CREATE = re.compile(r"^/v1/models/[^/]+/[^/]+/predictions$")
_GET = re.compile(r"^/v1/predictions/([0-9a-z]+)$")
_CANCEL = re.compile(r"^/v1/predictions/([0-9a-z]+)/cancel$")
_FILE = re.compile(r"^/files/([0-9a-z]+)\.png$")


def tiny_png() -> bytes:
    """A real 8x8 PNG (the worker checks what it downloads)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (30, 120, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


class Jobs:
    """Every prediction's creation time, and what the fake has answered so far."""

    def __init__(self, job_seconds: float):
        self.job_seconds = job_seconds
        self.created: dict[str, float] = {}
        self.probes: dict[str, float] = {}
        self.counts = {"creates": 0, "polls": 0, "files": 0, "cancels": 0}
        self._ids = itertools.count(1)
        self.lock = threading.Lock()

    def create(self, prompt: str) -> str:
        """Record a new prediction; returns its id."""
        now = time.time()
        with self.lock:
            job_id = format(next(self._ids), "x")
            self.created[job_id] = now
            self.counts["creates"] += 1
            if prompt.startswith("probe-"):
                self.probes[prompt] = now
        return job_id

    def status(self, job_id: str) -> str | None:
        """processing, succeeded, or None for an unknown id; counts the poll."""
        with self.lock:
            self.counts["polls"] += 1
            created = self.created.get(job_id)
        if created is None:
            return None
        return "succeeded" if time.time() >= created + self.job_seconds else "processing"

    def stats(self) -> dict:
        """The counters and the probes' arrival times."""
        with self.lock:
            return {**self.counts, "time": time.time(), "probes": dict(self.probes)}


def make_handler(jobs: Jobs, png: bytes):
    """The request handler class, bound to `jobs`."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the worker's pooled session expects

        def log_message(self, *args):  # one line per request would cost more than the answer
            pass

        def _send(self, status: int, body: bytes, content_type: str = "application/json"):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, value: dict):
            self._send(status, json.dumps(value).encode())

        def _authorized(self) -> bool:
            if self.headers.get("Authorization") == f"Bearer {TOKEN}":
                return True
            self._json(401, {"title": "Unauthenticated", "detail": "bad token", "status": 401})
            return False

        def _prediction(self, job_id: str, status: str) -> dict:
            output = ([f"http://{self.headers.get('Host')}/files/{job_id}.png"]
                      if status == "succeeded" else None)
            return {"id": job_id, "status": status, "output": output, "error": None}

        def do_POST(self):  # noqa: N802 (http.server's naming)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if not self._authorized():
                return
            if _CREATE.match(self.path):
                prompt = str((json.loads(body or b"{}").get("input") or {}).get("prompt", ""))
                self._json(201, self._prediction(jobs.create(prompt), "starting"))
            elif (match := _CANCEL.match(self.path)):
                with jobs.lock:
                    jobs.counts["cancels"] += 1
                self._json(200, self._prediction(match.group(1), "canceled"))
            else:
                self._json(404, {"title": "Not found", "detail": self.path, "status": 404})

        def do_GET(self):  # noqa: N802
            if self.path == "/_stats":
                self._json(200, jobs.stats())
                return
            if (match := _FILE.match(self.path)):
                with jobs.lock:
                    jobs.counts["files"] += 1
                self._send(200, png, "image/png")
                return
            if not self._authorized():
                return
            match = _GET.match(self.path)
            status = jobs.status(match.group(1)) if match else None
            if status is None:
                self._json(404, {"title": "Not found", "detail": self.path, "status": 404})
            else:
                self._json(200, self._prediction(match.group(1), status))

    return Handler


def serve(job_seconds: float, port: int = 0) -> ThreadingHTTPServer:
    """A running fake on 127.0.0.1 (serving in a daemon thread)."""
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(Jobs(job_seconds), tiny_png()))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job-seconds", type=float, default=120.0)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = serve(args.job_seconds, args.port)
    print(f"port {server.server_port}", flush=True)
    try:
        sys.stdin.read()  # serve until the parent closes our stdin (or dies)
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
