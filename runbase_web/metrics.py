"""Prometheus metrics kept in process memory: what the database does not record.

Two things only: the latency and outcome of every HTTP request to a provider API
(observed in providers/http.py, the one place every provider call passes through) and
the busy slots of the worker(s) running in this process. Everything the database records
(runs by status, money, webhook deliveries, queue depth) is computed from it at scrape
time instead (metrics_db.py), which is correct whichever process answers the scrape.

Where these in-process numbers are exposed (README, "Health, metrics and logs"):
`python app.py` adds them to its /metrics (one process: web and embedded worker); a
standalone worker serves them on RUNBASE_WORKER_METRICS_ADDRESS (serve_worker_metrics),
each worker its own Prometheus target. Web processes under gunicorn run no worker, so
their /metrics carries only the database's numbers, identical in every process: no
PROMETHEUS_MULTIPROC_DIR is needed.
"""
from __future__ import annotations

import hmac
import threading
import weakref
from typing import Iterable, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

#: The in-process metrics of this process.
REGISTRY = CollectorRegistry(auto_describe=True)
#: Provider requests range from a 50 ms poll to minutes of video generation.
PROVIDER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, float("inf"))

PROVIDER_REQUESTS = Histogram(
    "runbase_provider_request_duration_seconds",
    "HTTP requests to provider APIs, until the response headers, by provider and outcome "
    "(ok, throttled, client_error, server_error, timeout, unreachable).",
    ["provider", "outcome"], buckets=PROVIDER_BUCKETS, registry=REGISTRY)


def http_outcome(status: int) -> str:
    """The outcome label of a provider's HTTP answer."""
    if status == 429:
        return "throttled"
    if status >= 500:
        return "server_error"
    return "client_error" if status >= 400 else "ok"


def observe_provider_request(provider: str, outcome: str, seconds: float) -> None:
    """Record one provider request (providers/http.py calls this for every request)."""
    PROVIDER_REQUESTS.labels(provider, outcome).observe(seconds)


class _Slots(Protocol):
    threads: int

    def busy_slots(self) -> int: ...


class _WorkerCollector(Collector):
    """Busy and total slots of the workers tracked in this process, read at scrape time."""

    def __init__(self):
        self._workers: "weakref.WeakSet[_Slots]" = weakref.WeakSet()

    def track(self, worker: _Slots) -> None:
        self._workers.add(worker)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        workers = list(self._workers)
        busy = GaugeMetricFamily("runbase_worker_busy_slots",
                                 "Worker pool threads taken by runs and upstream cancels.")
        busy.add_metric([], sum(worker.busy_slots() for worker in workers))
        total = GaugeMetricFamily("runbase_worker_slots", "Worker pool threads in this process.")
        total.add_metric([], sum(worker.threads for worker in workers))
        return [busy, total]


_WORKERS = _WorkerCollector()
REGISTRY.register(_WORKERS)
ProcessCollector(registry=REGISTRY)  # CPU, memory, open files: per process, like the rest


def track_worker(worker: _Slots) -> None:
    """Count `worker`'s slots in this process's runbase_worker_* gauges."""
    _WORKERS.track(worker)


def in_process_exposition() -> bytes:
    """This process's in-process metrics in the Prometheus text format."""
    return generate_latest(REGISTRY)


def token_matches(configured: str | None, authorization: str | None) -> bool:
    """Whether an Authorization header carries the configured bearer token (compared in
    constant time); True when no token is configured."""
    if not configured:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                              configured.encode())


def serve_worker_metrics(address: tuple[str, int], token: str | None):
    """Serve GET /metrics (in-process metrics, bearer `token` if set) on (host, port) from
    a daemon thread, for a standalone worker; returns the server (its .server_port)."""
    from werkzeug.serving import make_server

    def app(environ, start_response):
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        if not token_matches(token, environ.get("HTTP_AUTHORIZATION")):
            start_response("401 Unauthorized", [("Content-Type", "text/plain"),
                                                ("WWW-Authenticate", "Bearer")])
            return [b"unauthorized\n"]
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
        return [in_process_exposition()]

    server = make_server(*address, app, threaded=True)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="runbase-metrics", daemon=True).start()
    return server
