"""Runs: create (validate, price, charge, insert in one transaction), read, finish."""
from __future__ import annotations

import re
import secrets
import string
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping
from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .. import jsontext
from ..errors import InvalidInput, ModelNotFound, RunNotFound
from ..models import ACTIVE_STATUSES, Run, RunStatus
from . import ledger, webhooks
from ..catalog import Catalog, InputError, ModelSpec, price, validate_input

_ID_ALPHABET = string.ascii_lowercase + string.digits
#: The largest seed models accept; a run without one gets a random seed so it can be repeated.
MAX_SEED = 2_147_483_647
MAX_WEBHOOK_URL = 2048
#: Run.upstream_cancel states (see the column's comment).
UPSTREAM_CANCEL_REQUESTED, UPSTREAM_CANCEL_SENT, UPSTREAM_CANCEL_FAILED = "requested", "sent", "failed"
# Spaces, C0 controls, DEL and lone surrogates: never part of a URL we should store or call.
_URL_UNSAFE = re.compile("[\x00-\x20\x7f\ud800-\udfff]")


def now() -> datetime:
    """The current time, timezone-aware UTC (one place to read the clock)."""
    return datetime.now(timezone.utc)


def new_run_id() -> str:
    """`run_` and 24 random characters: unguessable and URL-safe."""
    return "run_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


def resolve_model(catalog: Catalog, model_id: str, provider_env: Mapping[str, str]) -> ModelSpec:
    """The catalog entry for `model_id` if it exists and its provider is configured."""
    spec = catalog.get(model_id)
    if spec is None:
        raise ModelNotFound(f"Model '{model_id}' does not exist on this server.")
    missing = spec.missing_env(provider_env)
    if missing:
        raise ModelNotFound(f"Model '{model_id}' exists, but its provider is not configured "
                            f"on this server (set {', '.join(missing)}).")
    return spec


def prepare_input(spec: ModelSpec, raw_input: dict) -> dict:
    """Validate the input, apply defaults, and fix a seed where the model takes one."""
    try:
        # Before the schema: deep nesting would exhaust the recursion limit in validation,
        # and a lone surrogate or NUL would break storage, pages and the provider call.
        jsontext.check_value(raw_input, max_depth=jsontext.MAX_JSON_DEPTH - 1)
    except jsontext.UnsafeJson as error:
        raise InvalidInput(f"'input' is not acceptable: {error}") from None
    try:
        valid = validate_input(spec, raw_input)
    except InputError as error:
        raise InvalidInput(str(error), field=error.field) from None
    if "seed" in spec.input_schema.get("properties", {}) and "seed" not in valid:
        valid["seed"] = secrets.randbelow(MAX_SEED + 1)
    return valid


def create_run(session: Session, *, catalog: Catalog, provider_env: Mapping[str, str],
               user_id: int, api_key_id: int | None, model_id: str, raw_input: dict,
               source: str = "api", webhook_url: str | None = None,
               parent_id: str | None = None) -> Run:
    """Create a pending run and charge for it, in the caller's transaction.

    `webhook_url` is notified when the run ends; `parent_id` names the user's run this
    one was made from (lineage). Raises ModelNotFound, InvalidInput, InsufficientBalance
    or SpendLimitExceeded; the caller rolls back on any of them, so nothing is half-done.
    """
    spec = resolve_model(catalog, model_id, provider_env)
    valid = prepare_input(spec, raw_input)
    if webhook_url is not None:
        webhook_url = check_webhook_url(webhook_url)
    if parent_id is not None:
        parent_id = get_run(session, user_id, parent_id).id
    cost = price(spec, valid)
    created = now()
    run = Run(id=new_run_id(), user_id=user_id, api_key_id=api_key_id, source=source,
              model=spec.id, input=valid, status=RunStatus.PENDING.value, cost_micros=cost,
              created_at=created, deadline_at=created + timedelta(seconds=spec.deadline_seconds),
              webhook_url=webhook_url, parent_id=parent_id)
    session.add(run)
    session.flush()
    ledger.charge_for_run(session, user_id=user_id, api_key_id=api_key_id, run_id=run.id, cost=cost)
    return run


def check_webhook_url(value: object) -> str:
    """An absolute http(s) URL of sane length. Where it may point (no private or
    metadata addresses) is checked by net.Fetcher on every delivery, after DNS."""
    if not isinstance(value, str) or len(value) > MAX_WEBHOOK_URL:
        raise InvalidInput(f"'webhook' must be an https URL of at most {MAX_WEBHOOK_URL} characters.",
                           field="webhook")
    if _URL_UNSAFE.search(value):
        raise InvalidInput("'webhook' may not contain spaces, control characters or invalid "
                           "Unicode.", field="webhook")
    try:
        parts = urlsplit(value)
    except ValueError:  # an unbalanced or invalid [IPv6] host, e.g. "http://["
        parts = None
    if parts is None or parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidInput("'webhook' must be an absolute https URL.", field="webhook")
    return value


def get_run(session: Session, user_id: int, run_id: str) -> Run:
    """The user's run; another account's run is indistinguishable from a missing one."""
    run = session.get(Run, run_id) if isinstance(run_id, str) and len(run_id) <= 40 else None
    if run is None or run.user_id != user_id:
        raise RunNotFound(f"No run with id '{run_id}' for this account.")
    return run


def recent_runs(session: Session, user_id: int, limit: int = 20) -> list[Run]:
    """The user's newest runs."""
    return list(session.scalars(select(Run).where(Run.user_id == user_id)
                                .order_by(Run.created_at.desc(), Run.id.desc()).limit(limit)))


def mark_succeeded(session: Session, run_id: str, urls: list[str]) -> bool:
    """End an active run as succeeded with its stored file URLs; False if it had already ended."""
    statement = (update(Run).where(Run.id == run_id, Run.status.in_(ACTIVE_STATUSES))
                 .values(status=RunStatus.SUCCEEDED.value, output_urls=urls, completed_at=now(),
                         lease_owner=None, lease_until=None, next_check_at=None))
    ended = session.execute(statement).rowcount == 1
    if ended:
        webhooks.enqueue_for_run(session, run_id)
    return ended


def mark_failed(session: Session, run_id: str, *, message: str, code: str) -> bool:
    """End an active run as failed with a refund, exactly once (see ledger.fail_and_refund)."""
    ended = ledger.fail_and_refund(session, run_id, message=message, code=code)
    if ended:
        webhooks.enqueue_for_run(session, run_id)
    return ended


def cancel_run(session: Session, user_id: int, run_id: str) -> tuple[Run, bool]:
    """Cancel the user's run if it is still active: failed, errorCode canceled, refunded.

    Returns (run, canceled_now). A run that already ended is returned unchanged, so
    cancel racing completion leaves exactly one outcome (reliability.md W8, M11).
    """
    run = get_run(session, user_id, run_id)
    canceled = mark_failed(session, run.id, message="Canceled by the user.", code="canceled")
    if canceled:
        # Only recorded here: a worker asks the provider to stop the job (request
        # handlers never call providers, whose answers can take many seconds).
        request_upstream_cancel(session, run.id)
    session.refresh(run)
    return run, canceled


def list_runs(session: Session, user_id: int, *, limit: int, after: str | None = None,
              status: str | None = None, model: str | None = None) -> tuple[list[Run], bool]:
    """The user's runs newest first, after the cursor run; returns (page, has_more)."""
    query = select(Run).where(Run.user_id == user_id)
    if status:
        query = query.where(Run.status == status)
    if model:
        query = query.where(Run.model == model)
    if after:
        cursor = get_run(session, user_id, after)
        query = query.where((Run.created_at < cursor.created_at)
                            | ((Run.created_at == cursor.created_at) & (Run.id < cursor.id)))
    rows = list(session.scalars(query.order_by(Run.created_at.desc(), Run.id.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def run_summary(run: Run) -> dict[str, Any]:
    """Fields the pages show about a run besides its outputs."""
    elapsed_until = run.completed_at or now()
    return {"elapsed_seconds": max(0.0, (elapsed_until - run.created_at).total_seconds())}


def request_upstream_cancel(session: Session, run_id: str, *, upstream_id: str | None = None,
                            upstream_state: dict | None = None) -> bool:
    """Record that the provider should be asked to stop the upstream job of an ended run,
    due now; a worker does the asking. `upstream_id` names a job that was created after the
    run had already ended (a cancel racing the provider's create). Returns whether recorded."""
    values = {"upstream_cancel": UPSTREAM_CANCEL_REQUESTED, "next_check_at": now()}
    if upstream_id is not None:
        values.update(upstream_id=upstream_id, upstream_state=upstream_state)
    condition = Run.upstream_id.is_(None) if upstream_id is not None else Run.upstream_id.is_not(None)
    result = session.execute(update(Run).where(
        Run.id == run_id, Run.status == RunStatus.FAILED.value, Run.upstream_cancel.is_(None),
        condition).values(**values))
    return result.rowcount == 1


def record_upstream_cancel(session: Session, run_id: str, *, sent: bool, upstream_state: dict,
                           retry_after: float | None = None) -> None:
    """Record how asking the provider to stop a job went: sent, to be retried after
    `retry_after` seconds, or (no retry_after) failed for good."""
    if sent:
        outcome, check_at = UPSTREAM_CANCEL_SENT, None
    elif retry_after is not None:
        outcome, check_at = UPSTREAM_CANCEL_REQUESTED, now() + timedelta(seconds=retry_after)
    else:
        outcome, check_at = UPSTREAM_CANCEL_FAILED, None
    session.execute(update(Run).where(Run.id == run_id,
                                      Run.upstream_cancel == UPSTREAM_CANCEL_REQUESTED)
                    .values(upstream_cancel=outcome, next_check_at=check_at,
                            upstream_state=upstream_state))
