"""Money: conditional debits, exactly-once refunds, credits, and the invariants.

Every balance change is one conditional UPDATE plus one ledger row in the caller's
transaction, so the check and the change can't be separated by another writer
(README, "Reliability"). Amounts are integer micro-USD throughout.
"""
from __future__ import annotations

from sqlalchemy import Connection, Row, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..errors import InsufficientBalance, RunbaseError, SpendLimitExceeded
from ..models import ApiKey, EntryKind, LedgerEntry, Run, RunStatus, User, is_active, utcnow
from ..money import format_usd


#: Where the hot writes run: the caller's session, or a Core connection (write_group).
Executor = Session | Connection

_users, _keys, _entries = User.__table__, ApiKey.__table__, LedgerEntry.__table__
# The hot statements are built once, on the tables rather than the ORM classes: plain
# Core statements with bound parameters skip the ORM's per-call compile and bookkeeping.
_MOVE = (update(_users).where(_users.c.id == bindparam("user_id"))
         .values(balance_micros=_users.c.balance_micros + bindparam("amount"))
         .returning(_users.c.balance_micros))
_MOVE_WITHIN_FUNDS = (update(_users).where(_users.c.id == bindparam("user_id"),
                                           _users.c.balance_micros + bindparam("amount") >= 0)
                      .values(balance_micros=_users.c.balance_micros + bindparam("amount"))
                      .returning(_users.c.balance_micros))
_ADD_KEY_SPEND = (update(_keys).where(
    _keys.c.id == bindparam("key_id"),
    _keys.c.spend_limit_micros.is_(None)
    | (_keys.c.spent_micros + bindparam("cost") <= _keys.c.spend_limit_micros))
    .values(spent_micros=_keys.c.spent_micros + bindparam("cost")))
_TAKE_BACK_KEY_SPEND = (update(_keys).where(_keys.c.id == bindparam("key_id"))
                        .values(spent_micros=_keys.c.spent_micros - bindparam("cost")))
_ADD_ENTRY = insert(_entries)


def _move(session: Executor, user_id: int, amount: int, *, require_funds: bool) -> int | None:
    """Add `amount` to a balance; with `require_funds`, only if it stays >= 0. Returns the new balance."""
    statement = _MOVE_WITHIN_FUNDS if require_funds else _MOVE
    return session.execute(statement, {"user_id": user_id, "amount": amount}).scalar_one_or_none()


def _add_entry(session: Executor, *, user_id: int, run_id: str, api_key_id: int | None,
               kind: EntryKind, amount: int, balance: int) -> None:
    session.execute(_ADD_ENTRY, {"user_id": user_id, "run_id": run_id, "api_key_id": api_key_id,
                                 "kind": kind.value, "amount_micros": amount,
                                 "balance_after_micros": balance, "created_at": utcnow()})


def debit_for_run(session: Executor, *, user_id: int, api_key_id: int | None, cost: int) -> int:
    """Take a run's cost from the balance and the key's remaining limit, or refuse;
    returns the balance after. Record the charge (record_charge) once the run exists.

    The user row is updated before the key row, always, so two creates never lock the
    same rows in opposite orders. A refusal by the key's limit comes after the balance
    changed: the caller's savepoint or transaction must be rolled back (run_creation does).
    """
    balance = _move(session, user_id, -cost, require_funds=True)
    if balance is None:
        raise balance_too_low(cost)
    if api_key_id is not None:
        if session.execute(_ADD_KEY_SPEND, {"key_id": api_key_id, "cost": cost}).rowcount != 1:
            raise past_key_limit()
    return balance


def balance_too_low(cost: int) -> InsufficientBalance:
    """The refusal of a run whose cost the balance does not cover."""
    return InsufficientBalance(f"Your balance is too low for this run, which costs {format_usd(cost)}.")


def past_key_limit() -> SpendLimitExceeded:
    """The refusal of a run that would take its key past the key's spend limit."""
    return SpendLimitExceeded("This run would take the API key past its spend limit.")


def record_charge(session: Executor, *, user_id: int, api_key_id: int | None, run_id: str,
                  cost: int, balance: int) -> None:
    """The ledger row of a debit_for_run, for the run just inserted."""
    _add_entry(session, user_id=user_id, run_id=run_id, api_key_id=api_key_id,
               kind=EntryKind.CHARGE, amount=-cost, balance=balance)


_runs = Run.__table__
_FAIL = (update(_runs).where(_runs.c.id == bindparam("run_id"),
                             is_active(_runs.c.status))
         .values(status=RunStatus.FAILED.value, error=bindparam("message"),
                 error_code=bindparam("code"), completed_at=bindparam("at"), lease_owner=None,
                 lease_until=None, next_check_at=None)
         .returning(_runs.c.user_id, _runs.c.api_key_id, _runs.c.cost_micros,
                    _runs.c.webhook_url))


def fail_and_refund(session: Session, run_id: str, *, message: str, code: str) -> Row | None:
    """End an active run as failed and refund its cost. Exactly once: returns None if the
    run had already ended, whoever got there first (worker, reaper, cancel); else the
    ended run's (user_id, api_key_id, cost_micros, webhook_url)."""
    row = session.execute(_FAIL, {"run_id": run_id, "message": message, "code": code,
                                  "at": utcnow()}).first()
    if row is None:
        return None
    user_id, api_key_id, cost, _webhook = row
    balance = _move(session, user_id, cost, require_funds=False)
    if api_key_id is not None:
        session.execute(_TAKE_BACK_KEY_SPEND, {"key_id": api_key_id, "cost": cost})
    _add_entry(session, user_id=user_id, run_id=run_id, api_key_id=api_key_id,
               kind=EntryKind.REFUND, amount=cost, balance=balance)
    return row


def credit(session: Session, user_id: int, amount: int, *, kind: EntryKind,
           note: str | None = None, external_ref: str | None = None) -> LedgerEntry | None:
    """Grant, top up or adjust a balance; a negative adjustment may not go below zero.

    With `external_ref` (an outside event, e.g. a Stripe Checkout session id) the credit
    happens at most once per ref: a second call, even one racing the first from another
    transaction, changes nothing and returns None.
    """
    if kind in (EntryKind.CHARGE, EntryKind.REFUND):
        raise ValueError("charges and refunds belong to runs")
    if amount == 0:
        raise RunbaseError("The amount must not be zero.")
    if external_ref is None:
        return _credit_now(session, user_id, amount, kind, note, None)
    if _already_recorded(session, external_ref):
        return None
    try:
        # A savepoint, so losing the race on the UNIQUE ref undoes only this credit's
        # balance change, not the caller's transaction.
        with session.begin_nested():
            entry = _credit_now(session, user_id, amount, kind, note, external_ref)
            session.flush()
    except IntegrityError:
        if _already_recorded(session, external_ref):
            return None
        raise
    return entry


def _already_recorded(session: Session, external_ref: str) -> bool:
    return session.scalar(select(LedgerEntry.id)
                          .where(LedgerEntry.external_ref == external_ref)) is not None


def _credit_now(session: Session, user_id: int, amount: int, kind: EntryKind,
                note: str | None, external_ref: str | None) -> LedgerEntry:
    balance = _move(session, user_id, amount, require_funds=amount < 0)
    if balance is None:
        raise InsufficientBalance("That adjustment would take the balance below zero.")
    entry = LedgerEntry(user_id=user_id, kind=kind.value, amount_micros=amount,
                        balance_after_micros=balance, note=note, external_ref=external_ref)
    session.add(entry)
    return entry


def invariant_violations(session: Session) -> list[str]:
    """Check the ledger rules; an empty list means all hold."""
    problems = _balance_mismatches(session) + _run_entry_problems(session)
    problems += _key_spend_mismatches(session)
    return problems


def _balance_mismatches(session: Session) -> list[str]:
    sums = dict(session.execute(select(LedgerEntry.user_id, func.sum(LedgerEntry.amount_micros))
                                .group_by(LedgerEntry.user_id)).all())
    problems = []
    for user_id, balance in session.execute(select(User.id, User.balance_micros)):
        if balance < 0:
            problems.append(f"user {user_id}: negative balance {balance}")
        if balance != (sums.get(user_id) or 0):
            problems.append(f"user {user_id}: balance {balance} != ledger sum {sums.get(user_id)}")
    return problems


def _run_entry_problems(session: Session) -> list[str]:
    entries: dict[str, dict[str, list[int]]] = {}
    for run_id, kind, amount in session.execute(
            select(LedgerEntry.run_id, LedgerEntry.kind, LedgerEntry.amount_micros)
            .where(LedgerEntry.run_id.is_not(None))):
        entries.setdefault(run_id, {}).setdefault(kind, []).append(amount)
    problems = []
    for run_id, status, cost in session.execute(select(Run.id, Run.status, Run.cost_micros)):
        kinds = entries.get(run_id, {})
        if kinds.get("charge") != [-cost]:
            problems.append(f"run {run_id}: charges {kinds.get('charge')} for cost {cost}")
        refunds = kinds.get("refund", [])
        expected = [cost] if status == RunStatus.FAILED.value else []
        if refunds != expected:
            problems.append(f"run {run_id} ({status}): refunds {refunds}, expected {expected}")
    return problems


def _key_spend_mismatches(session: Session) -> list[str]:
    net = dict(session.execute(
        select(LedgerEntry.api_key_id, func.sum(LedgerEntry.amount_micros))
        .where(LedgerEntry.api_key_id.is_not(None),
               LedgerEntry.kind.in_([EntryKind.CHARGE.value, EntryKind.REFUND.value]))
        .group_by(LedgerEntry.api_key_id)).all())
    problems = []
    for key_id, spent, limit in session.execute(
            select(ApiKey.id, ApiKey.spent_micros, ApiKey.spend_limit_micros)):
        if spent != -(net.get(key_id) or 0):
            problems.append(f"key {key_id}: spent {spent} != net charges {-(net.get(key_id) or 0)}")
        if limit is not None and spent > limit:
            problems.append(f"key {key_id}: spent {spent} over its limit {limit}")
    return problems
