"""POST /api/v1/runs and GET /api/v1/runs/<id>."""
from __future__ import annotations

from typing import Callable

from flask import g, jsonify, request

from .. import jsontext, state
from ..errors import InvalidJson, InvalidQuery, MissingInput, MissingModel
from ..extensions import db, reads_only
from ..models import Run, RunStatus
from ..services import idempotency, runs
from ..services.run_object import run_object
from ..urls import public_base_url
from .auth import require_key
from .blueprint import bp


def _json_body() -> dict:
    try:
        # Cached (bounded by MAX_CONTENT_LENGTH): a view retried after a dead database
        # connection reads the body a second time.
        body = jsontext.loads_strict(request.get_data() or b"")
    except jsontext.UnsafeJson as error:
        raise InvalidJson(f"The request body is not acceptable JSON: {error}") from None
    except ValueError:  # UnicodeDecodeError included
        raise InvalidJson("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise InvalidJson("The request body must be a JSON object.")
    return body


def _model_and_input(body: dict) -> tuple[str, dict]:
    model, raw_input = body.get("model"), body.get("input")
    if not isinstance(model, str) or not model:
        raise MissingModel("'model' is required and must be a string like 'local/sketch'.")
    if not isinstance(raw_input, dict):
        raise MissingInput("'input' is required and must be an object.")
    return model, raw_input


def _creator(body: dict, model: str, raw_input: dict, *, alone: bool) -> Callable[[], Run]:
    """Creates the run the body asks for, when called. No savepoint: the request's
    transaction holds only this run, and any refusal rolls all of it back (api/errors).
    A create that is `alone` in its transaction (no idempotency record to write with it)
    is committed with other requests' creates on SQLite (write_group.py)."""
    return lambda: state.run_creator().create(
        db.session, user_id=g.caller.user_id, api_key_id=g.caller.key_id, model_id=model,
        raw_input=raw_input, source="api", webhook_url=body.get("webhook"), atomic=False,
        group=db.write_group() if alone else None)


def _idempotency_key() -> str | None:
    """The Idempotency-Key header as the text the client sent.

    WSGI hands header values over as Latin-1, one character per byte; a client's UTF-8
    key ("é" * 200) would count 400 characters against the 255 allowed. Keys that are not
    UTF-8 are kept as they came.
    """
    raw = request.headers.get("Idempotency-Key")
    if raw is None:
        return None
    try:
        return raw.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return raw


@bp.post("/runs")
@require_key
def create_run():
    """Create a run: validate, price, charge, queue (once per Idempotency-Key)."""
    body = _json_body()
    model, raw_input = _model_and_input(body)
    key = _idempotency_key()
    run, replayed = idempotency.create_once(
        db.session, user_id=g.caller.user_id, key=key,
        body=body, create=_creator(body, model, raw_input, alone=key is None))
    if not replayed:
        state.wake_worker()
    response = jsonify(run_object(run, public_base_url()))
    response.status_code = 201
    response.headers["Location"] = f"/api/v1/runs/{run.id}"
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@bp.get("/runs/<run_id>")
@reads_only
@require_key
def get_run(run_id: str):
    """One run of the caller's account."""
    run = runs.get_public_run(db.connection, g.caller.user_id, run_id)
    return jsonify(run_object(run, public_base_url()))


@bp.post("/runs/<run_id>/cancel")
@require_key
def cancel_run(run_id: str):
    """End a pending or processing run as failed (errorCode canceled), refunded."""
    run, canceled = runs.cancel_run(db.session, g.caller.user_id, run_id)
    db.session.commit()
    if canceled:
        state.wake_worker()  # it sends the webhook and stops the upstream job
    return jsonify(run_object(run, public_base_url()))


def _list_arguments() -> dict:
    args = request.args
    try:
        limit = int(args.get("limit", 20))
    except ValueError:
        raise InvalidQuery("'limit' must be a whole number from 1 to 100.") from None
    if not 1 <= limit <= 100:
        raise InvalidQuery("'limit' must be a whole number from 1 to 100.")
    # An empty status is refused, not read as "any": the parameter is an enum.
    status = args.get("status")
    if status is not None and status not in {s.value for s in RunStatus}:
        raise InvalidQuery("'status' must be one of pending, processing, succeeded, failed.")
    return {"limit": limit, "after": args.get("after") or None, "status": status,
            "model": args.get("model") or None}


@bp.get("/runs")
@reads_only
@require_key
def list_runs():
    """The account's runs, newest first; pass `nextCursor` as `after` for the next page."""
    page, has_more = runs.list_runs(db.session, g.caller.user_id, **_list_arguments())
    base = public_base_url()
    return jsonify({"data": [run_object(run, base) for run in page], "hasMore": has_more,
                    "nextCursor": page[-1].id if has_more else None})
