"""Readiness checks behind GET /readyz: is this process able to serve requests now?

Each check runs on a thread of its own with a deadline, so a database that hangs
instead of refusing cannot hang the probe: the answer comes within CHECK_TIMEOUT_SECONDS
whatever happens. Failures are described in fixed words (plus the exception's class
name), never with the exception's message: that could carry host names or credentials,
and /readyz needs no key.
"""
from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

from flask import Flask
from sqlalchemy.exc import DBAPIError

from . import state
from .cli import MIGRATIONS, script_head
from .extensions import begin_reading_only, db, end_reading_only

#: Longest a readiness answer waits for any one check.
CHECK_TIMEOUT_SECONDS = 2.0
_REDIS_CLIENT = "runbase.health_redis"


class NotReady(Exception):
    """A check found its dependency unusable; the message is safe to show anyone."""


@dataclass(frozen=True)
class CheckResult:
    """One dependency's verdict and how long finding it out took."""

    ok: bool
    ms: float
    detail: str | None = None

    def as_json(self) -> dict:
        """The check as /readyz shows it."""
        answer = {"ok": self.ok, "ms": round(self.ms, 1)}
        if self.detail:
            answer["detail"] = self.detail
        return answer


@lru_cache(maxsize=1)
def newest_revision() -> str:
    """The migration the database must record; read once per process (the scripts ship
    with the code, and a deploy restarts the process)."""
    head = script_head()
    if head is None:  # not one plain chain: ask Alembic (slower, but only once)
        from alembic.script import ScriptDirectory
        head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    return head


def check_database(app: Flask) -> None:
    """The database answers and records the newest migration."""
    wanted = newest_revision()
    # Read-only: on SQLite the check must never wait for the write lock behind a writer.
    token = begin_reading_only()
    try:
        for attempt in (1, 2):
            try:
                with db.state(app).engine.connect() as connection:
                    rows = connection.exec_driver_sql("SELECT version_num FROM alembic_version").all()
                break
            except DBAPIError as error:
                # A pooled connection the server dropped (it restarted): the pool has been
                # invalidated, so one more try gets a fresh one.
                if attempt == 1 and error.connection_invalidated:
                    continue
                raise NotReady(f"unreachable ({type(error).__name__})") from None
    finally:
        end_reading_only(token)
    if [row[0] for row in rows] != [wanted]:
        raise NotReady("the schema is not at this code's newest migration "
                       "(run `flask --app app db upgrade`)")


def check_storage(app: Flask) -> None:
    """Output storage accepts a file (written and removed again): the data dir's disk, or
    the S3 bucket."""
    storage = state.storage(app)
    name = f"readyz-{secrets.token_hex(8)}.probe"
    try:
        storage.save(name, b"")
        storage.delete(name)
    except OSError as error:
        raise NotReady(f"not writable ({type(error).__name__})") from None
    except Exception as error:
        problem = _s3_problem(error)
        if problem is None:
            raise
        raise NotReady(problem) from None


def _s3_problem(error: Exception) -> str | None:
    """A botocore error in safe words (its class name only: the message may carry the
    endpoint's host or the bucket's name); None for anything else. Read from the class's
    module, so local-disk installs never import botocore here."""
    if not type(error).__module__.startswith("botocore."):
        return None
    from botocore.exceptions import ClientError  # loaded already: the S3 store uses it

    # The endpoint answered (AccessDenied, NoSuchBucket, ...), or it did not.
    verdict = "not writable" if isinstance(error, ClientError) else "unreachable"
    return f"{verdict} ({type(error).__name__})"


def check_redis(app: Flask) -> None:
    """Redis (rate limits shared across processes) answers PING."""
    import redis  # ~60 ms, and only deployments with Redis need it (see cli.alembic_config)

    client = app.extensions.get(_REDIS_CLIENT)
    if client is None:
        client = app.extensions[_REDIS_CLIENT] = redis.Redis.from_url(
            app.config["REDIS_URL"], socket_timeout=CHECK_TIMEOUT_SECONDS,
            socket_connect_timeout=CHECK_TIMEOUT_SECONDS)
    try:
        client.ping()
    except redis.RedisError as error:
        raise NotReady(f"unreachable ({type(error).__name__})") from None


def checks_for(app: Flask) -> dict[str, Callable[[Flask], None]]:
    """The checks that apply to this app's configuration, by name."""
    checks = {"database": check_database, "storage": check_storage}
    if app.config.get("REDIS_URL"):
        checks["redis"] = check_redis
    return checks


def _timed(check: Callable[[Flask], None], app: Flask, results: dict, name: str) -> None:
    started = time.perf_counter()
    try:
        check(app)
    except NotReady as problem:
        results[name] = CheckResult(False, (time.perf_counter() - started) * 1000, str(problem))
    except Exception as error:  # noqa: BLE001 - a probe reports, it never crashes
        results[name] = CheckResult(False, (time.perf_counter() - started) * 1000,
                                    f"failed ({type(error).__name__})")
    else:
        results[name] = CheckResult(True, (time.perf_counter() - started) * 1000)


def run_checks(app: Flask, timeout: float = CHECK_TIMEOUT_SECONDS) -> dict[str, CheckResult]:
    """Run every applicable check at once; a check still running at `timeout` fails as
    timed out (its daemon thread is left to finish on its own)."""
    results: dict[str, CheckResult] = {}
    threads = {name: threading.Thread(target=_timed, args=(check, app, results, name),
                                      name=f"runbase-readyz-{name}", daemon=True)
               for name, check in checks_for(app).items()}
    for thread in threads.values():
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads.values():
        thread.join(max(deadline - time.monotonic(), 0))
    return {name: results.get(name) or CheckResult(False, timeout * 1000, "timed out")
            for name in threads}
