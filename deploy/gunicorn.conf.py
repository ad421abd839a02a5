"""gunicorn settings for Runbase's web processes (`gunicorn --config deploy/gunicorn.conf.py app:app`).

Everything an operator tunes per machine comes from the environment, so the same file
serves every host: `RUNBASE_BIND` (where to listen) and `WEB_CONCURRENCY` (processes,
which gunicorn itself also reads). Web processes never run runs: workers do that
(`flask --app app worker`), so `RUNBASE_EMBEDDED_WORKER` must be 0 in their environment.
"""
import multiprocessing
import os

bind = os.environ.get("RUNBASE_BIND", "127.0.0.1:8000")
# Sync workers: a request is short (one transaction) and never waits on a provider, so
# one process per core plus one keeps the CPU busy without piling up requests.
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() + 1))
worker_class = "sync"
# Not preloaded: each process opens its own database pool after the fork, never a copy.
preload_app = False
# Above the slowest request (a large upload or a streamed file), below a load balancer's
# idle timeout.
timeout = 60
# Requests in flight get this long after SIGTERM before the process is killed.
graceful_timeout = 30
keepalive = 5
# Runbase logs one line per request itself (RUNBASE_LOG_FORMAT=json for JSON lines), so
# gunicorn's access log would only repeat it.
accesslog = None
errorlog = "-"
# Recycle processes now and then so a slow leak in any library cannot grow without bound;
# the jitter keeps them from restarting all at once.
max_requests = 20000
max_requests_jitter = 2000
