"""Creating runs: resolve the model, validate and price the input, charge, insert; one
run, or several that are all created or none. The only way runs come to exist, for the
API, the Playground and reruns alike.

RunCreator binds an app's catalog and settings once, so views pass only what the request
says. Each create is atomic (a savepoint): a refusal leaves nothing in the caller's
transaction, and the caller commits once when everything it asked for succeeded.
"""
from __future__ import annotations

import re
import secrets
from contextlib import nullcontext
from datetime import timedelta
from typing import Any, Mapping, Sequence
from urllib.parse import urlsplit

from sqlalchemy import insert, text
from sqlalchemy.orm import Session, make_transient_to_detached

from .. import jsontext
from ..catalog import Catalog, InputError, ModelSpec, price, validate_input
from ..errors import InsufficientBalance, InvalidInput, ModelNotFound, RunbaseError
from ..extensions import mark_written
from ..ids import LOWERCASE_AND_DIGITS, random_text
from ..models import Run, RunStatus, utcnow
from ..money import format_usd
from ..write_group import WriteGroup
from . import ledger, runs, uploads
from .charged_insert import insert_charged_run

#: The largest seed models accept; a run without one gets a random seed so it can be repeated.
MAX_SEED = 2_147_483_647
MAX_WEBHOOK_URL = 2048
# Spaces, C0 controls, DEL and lone surrogates: never part of a URL we should store or call.
_URL_UNSAFE = re.compile("[\x00-\x20\x7f\ud800-\udfff]")
#: The seed control: a random seed for every run, or the same seed again.
SEED_MODES = ("new", "keep")
#: How far back "keep seed" looks for the last seed you used.
LAST_SEED_LOOKBACK = 20


#: The PostgreSQL channel run creation notifies and workers listen on.
WAKE_CHANNEL = "runbase_runs"


def new_run_id() -> str:
    """`run_` and 24 random characters: unguessable and URL-safe."""
    return "run_" + random_text(LOWERCASE_AND_DIGITS, 24)


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


def create_run(session: Session, *, catalog: Catalog, provider_env: Mapping[str, str],
               user_id: int, api_key_id: int | None, model_id: str, raw_input: dict,
               source: str = "api", webhook_url: str | None = None,
               parent_id: str | None = None, atomic: bool = True,
               batch_id: str | None = None, batch_row: int | None = None,
               batch_col: int | None = None, group: WriteGroup | None = None) -> Run:
    """Create a pending run and charge for it, in the caller's transaction (or, with
    `group`, committed before this returns).

    `webhook_url` is notified when the run ends; `parent_id` names the user's run this
    one was made from (lineage). Raises ModelNotFound, InvalidInput, RunNotFound (a
    parent that isn't theirs), InsufficientBalance or SpendLimitExceeded, having left
    nothing behind: with `atomic` the run and its charge share a savepoint. `batch_id`,
    `batch_row` and `batch_col` place the run in a grid (services/batches.py). A caller whose
    transaction holds nothing else, and which rolls it back on any refusal (the API), passes
    atomic=False and saves the savepoint's two statements.

    With `group` (SQLite), the run and its charge are committed at once, in a transaction
    shared with other threads' creates (write_group.py): for a caller that has written
    nothing in `session` and commits right after (the API without an Idempotency-Key).
    `session`'s transaction is ended first: it may only have read (the checks above).
    """
    spec = resolve_model(catalog, model_id, provider_env)
    valid = prepare_input(spec, raw_input)
    # Uploaded files are private: a run may use only its own account's.
    uploads.check_image_urls(session, user_id, valid.get("image_urls"))
    if webhook_url is not None:
        webhook_url = check_webhook_url(webhook_url)
    if parent_id is not None:
        parent_id = runs.get_run(session, user_id, parent_id).id
    cost = price(spec, valid)
    created = utcnow()
    values = dict(id=new_run_id(), user_id=user_id, api_key_id=api_key_id, source=source,
                  model=spec.id, input=valid, status=RunStatus.PENDING.value, cost_micros=cost,
                  created_at=created, attempts=0, share_hide_prompt=False,
                  deadline_at=created + timedelta(seconds=spec.deadline_seconds),
                  webhook_url=webhook_url, parent_id=parent_id, batch_id=batch_id,
                  batch_row=batch_row, batch_col=batch_col)
    # Built before the transaction writes: from the first write to the commit SQLite's
    # write lock (PostgreSQL's lock on the user's row) is held, and building an ORM object
    # took a quarter of that time.
    run = _unsaved(values)
    if group is not None:
        _commit_in_group(session, group, values)
        return _as_loaded(session, run)
    with session.begin_nested() if atomic else nullcontext():
        if session.get_bind().dialect.name == "postgresql":
            # One statement; it also NOTIFYs the workers (charged_insert).
            insert_charged_run(session, values, channel=WAKE_CHANNEL)
        else:
            _insert_charged_sqlite(session, values)
    return _as_loaded(session, run)


def _insert_charged_sqlite(database: ledger.Executor, values: dict) -> None:
    """Debit, insert the run, record the charge: on SQLite, which has no NOTIFY (its
    workers poll or are woken in process). Debit first: a refusal then comes before
    anything is inserted. The key's limit may refuse after the balance was debited: the
    savepoint (or the caller's rollback) takes both back, so no caller can commit half a
    charge."""
    user_id, api_key_id, cost = values["user_id"], values["api_key_id"], values["cost_micros"]
    balance = ledger.debit_for_run(database, user_id=user_id, api_key_id=api_key_id, cost=cost)
    database.execute(_INSERT_RUN, values)
    ledger.record_charge(database, user_id=user_id, api_key_id=api_key_id,
                         run_id=values["id"], cost=cost, balance=balance)


def _commit_in_group(session: Session, group: WriteGroup, values: dict) -> None:
    """Commit the run of `values` and its charge through the group (in a transaction
    shared with other threads' creates); raise its refusal, having saved nothing."""
    # The group's leader needs the write lock: this thread must not hold it meanwhile
    # (SQLite's read transactions of a request that may write take it, see extensions).
    session.commit()
    try:
        group.run(lambda connection: _insert_charged_sqlite(connection, values))
    finally:
        mark_written()  # whatever the outcome, a disconnect now must not create it twice


def _unsaved(values: dict) -> Run:
    """A Run object with every column of the row `values` will insert (none left to load)."""
    return Run(**{column.key: values.get(column.key) for column in Run.__table__.columns})


def _as_loaded(session: Session, run: Run) -> Run:
    """The run just INSERTed (built by _unsaved), in the session as if it had been loaded:
    callers may read it, or change it and commit, without the ORM flush a create would
    otherwise pay (and without a SELECT: every column is set)."""
    make_transient_to_detached(run)
    session.add(run)
    return run


#: A plain INSERT, built once (see ledger: the hot statements skip the ORM).
_INSERT_RUN = insert(Run.__table__)


def notify_workers(session: Session) -> None:
    """On PostgreSQL, tell listening workers (worker/listener.py) that a run is waiting.
    NOTIFY is transactional: it is delivered when the creating transaction commits, and
    never if it rolls back. SQLite has no such thing; its workers poll or are woken in
    process."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"NOTIFY {WAKE_CHANNEL}"))


class ManyRunsRefused(RunbaseError):
    """Some of several runs can't be created, so none was. `errors` holds each refused
    model's reason by model id, `by_index` each refused run's by its place in the list
    asked for; both are empty when only the balance was short."""

    def __init__(self, message: str, errors: dict[str, RunbaseError] | None = None,
                 by_index: dict[int, RunbaseError] | None = None):
        super().__init__(message)
        self.errors = errors or {}
        self.by_index = by_index or {}


def create_runs(session: Session, *, catalog: Catalog, provider_env: Mapping[str, str],
                user_id: int, inputs: Sequence[tuple[str, dict]], source: str = "playground",
                parent_id: str | None = None, api_key_id: int | None = None,
                extras: Sequence[Mapping[str, Any]] | None = None) -> list[Run]:
    """One run per (model id, raw input), in the caller's transaction: all or none.

    Every run is tried, so all problems are reported at once; any problem raises
    ManyRunsRefused with nothing left behind (the runs made so far share a savepoint).
    `extras`, one mapping per input, adds create_run arguments of that run alone (a
    grid's batch_id, batch_row, batch_col, or its own parent_id).
    """
    with session.begin_nested():
        created, errors, by_index, refused = [], {}, {}, []
        for index, (model_id, raw) in enumerate(inputs):
            own = {"parent_id": parent_id, **(extras[index] if extras else {})}
            try:
                created.append(create_run(
                    session, catalog=catalog, provider_env=provider_env, user_id=user_id,
                    api_key_id=api_key_id, model_id=model_id, raw_input=raw, source=source,
                    **own))
            except InsufficientBalance:
                refused.append((model_id, raw))
            except RunbaseError as error:
                errors[model_id] = error
                by_index[index] = error
        if errors:
            raise ManyRunsRefused("Nothing was run: fix the input for " + ", ".join(errors) + ".",
                                  errors, by_index)
        if refused:
            total = sum(run.cost_micros for run in created) + sum(
                _price_or_zero(catalog.get(model_id), raw) for model_id, raw in refused)
            raise ManyRunsRefused(f"Your balance is too low for these {len(inputs)} runs, which "
                                  f"cost {format_usd(total)} together. Nothing was run.")
    return created


def _price_or_zero(spec: ModelSpec | None, raw: dict) -> int:
    """The price of a run that was refused for lack of funds (its input was valid)."""
    try:
        return price(spec, prepare_input(spec, raw)) if spec is not None else 0
    except (RunbaseError, InputError):
        return 0


def last_seed(session: Session, user_id: int) -> int | None:
    """The seed of the user's latest run that had one ("keep seed" with an empty field)."""
    for run in runs.recent_runs(session, user_id, limit=LAST_SEED_LOOKBACK):
        seed = runs.run_seed(run)
        if seed is not None:
            return seed
    return None


class _SeedControl:
    """How the seed control changes each model's raw input: "new" drops the seed (a random
    one is drawn), "keep" reuses the last seed when the field is empty; anything else
    leaves the input as it is. The last seed is looked up once, before any new run."""

    def __init__(self, session: Session, user_id: int, mode: str | None):
        self.session, self.user_id, self.mode = session, user_id, mode
        self._remembered: list[int | None] = []

    def apply(self, spec: ModelSpec | None, raw: dict) -> dict:
        """`raw` with the seed as the mode says (unchanged for models without a seed)."""
        if spec is None or "seed" not in spec.properties or self.mode not in SEED_MODES:
            return raw
        raw = dict(raw)
        if self.mode == "new":
            raw.pop("seed", None)
        elif "seed" not in raw:
            if not self._remembered:
                self._remembered.append(last_seed(self.session, self.user_id))
            if self._remembered[0] is not None:
                raw["seed"] = self._remembered[0]
        return raw


class RunCreator:
    """Creates runs for one app: its catalog and its provider variables, bound once.

    `settings` is the app's configuration, read on each create: PROVIDER_ENV may be
    replaced while the app runs (tests switch providers on and off).
    """

    def __init__(self, catalog: Catalog, settings: Mapping[str, Any]):
        self.catalog = catalog
        self.settings = settings

    @property
    def provider_env(self) -> Mapping[str, str]:
        """The provider variables that are set: they decide which models are available."""
        return self.settings["PROVIDER_ENV"]

    def create(self, session: Session, *, user_id: int, model_id: str, raw_input: dict,
               source: str, api_key_id: int | None = None, webhook_url: str | None = None,
               parent_id: str | None = None, seed_mode: str | None = None,
               atomic: bool = True, group: WriteGroup | None = None) -> Run:
        """One run (see create_run); `seed_mode` is the Playground's seed control."""
        raw_input = _SeedControl(session, user_id, seed_mode).apply(
            self.catalog.get(model_id), raw_input)
        return create_run(session, catalog=self.catalog, provider_env=self.provider_env,
                          user_id=user_id, api_key_id=api_key_id, model_id=model_id,
                          raw_input=raw_input, source=source, webhook_url=webhook_url,
                          parent_id=parent_id, atomic=atomic, group=group)

    def create_many(self, session: Session, *, user_id: int, inputs: Sequence[tuple[str, dict]],
                    source: str = "playground", parent_id: str | None = None,
                    seed_mode: str | None = None, api_key_id: int | None = None,
                    extras: Sequence[Mapping[str, Any]] | None = None) -> list[Run]:
        """One run per (model id, raw input), all or none (see create_runs)."""
        seeds = _SeedControl(session, user_id, seed_mode)
        seeded = [(model_id, seeds.apply(self.catalog.get(model_id), raw))
                  for model_id, raw in inputs]
        return create_runs(session, catalog=self.catalog, provider_env=self.provider_env,
                           user_id=user_id, inputs=seeded, source=source, parent_id=parent_id,
                           api_key_id=api_key_id, extras=extras)
