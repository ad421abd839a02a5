"""A new run and its charge as ONE statement, on PostgreSQL.

Creating a run is four writes and a wake-up: debit the balance (only if it covers the
cost), add to the key's spend (only within its limit), insert the run, insert the ledger
row, NOTIFY the workers. Sent one by one that is five round trips, plus BEGIN and COMMIT;
on PostgreSQL, data-modifying CTEs put all five in one statement. Each write is
conditioned on the one before it (no run without its debit, no ledger row without its
run), and the statement answers what happened, so the rules of `ledger.debit_for_run` and
`ledger.record_charge` hold unchanged:

- the user row is locked before the key row (the key's UPDATE waits on the debit's
  result), the order every other charge and refund uses, so creates cannot deadlock;
- a key past its limit refuses after the balance was debited in the same statement: the
  caller's savepoint or transaction must be rolled back, exactly as on SQLite;
- NOTIFY is sent (at commit) only when the run was inserted.

SQLite has no data-modifying CTEs; there run_creation sends the statements one by one.
"""
from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, bindparam, column, text
from sqlalchemy.orm import Session

from ..models import EntryKind, LedgerEntry, Run
from .ledger import balance_too_low, past_key_limit

#: What every run's values must name: the statement reads them apart from the row.
REQUIRED = ("id", "user_id", "api_key_id", "cost_micros", "created_at")
_ENTRY_TYPES = LedgerEntry.__table__.c


def _statement(channel: str, columns: tuple[str, ...]):
    """The statement inserting `columns` of the run, its parameters typed as the tables'
    columns (JSON, UTC times)."""
    run_values = ", ".join(f":{name}" for name in columns)
    sql = f"""
        WITH debit AS (
            UPDATE users SET balance_micros = balance_micros - :cost_micros
            WHERE id = :user_id AND balance_micros - :cost_micros >= 0
            RETURNING balance_micros
        ), spend AS (
            UPDATE api_keys SET spent_micros = spent_micros + :cost_micros
            WHERE id = :api_key_id AND EXISTS (SELECT FROM debit)
              AND (spend_limit_micros IS NULL
                   OR spent_micros + :cost_micros <= spend_limit_micros)
            RETURNING id
        ), run AS (
            INSERT INTO runs ({", ".join(columns)})
            SELECT {run_values}
            WHERE EXISTS (SELECT FROM debit)
              AND (:api_key_id IS NULL OR EXISTS (SELECT FROM spend))
            RETURNING id
        ), entry AS (
            INSERT INTO ledger_entries (user_id, run_id, api_key_id, kind, amount_micros,
                                        balance_after_micros, created_at)
            SELECT :user_id, run.id, :api_key_id, :kind, -:cost_micros, debit.balance_micros,
                   :created_at
            FROM run, debit
            RETURNING run_id
        )
        SELECT (SELECT balance_micros FROM debit) AS balance,
               EXISTS (SELECT FROM spend) AS key_charged,
               (SELECT count(pg_notify('{channel}', '')) FROM entry) AS inserted
    """
    run_columns = Run.__table__.c
    typed = [bindparam(name, type_=run_columns[name].type) for name in columns]
    typed.append(bindparam("kind", type_=_ENTRY_TYPES.kind.type))
    # Typed result columns: the result's description is then known once, not rebuilt from
    # the cursor on every create.
    return text(sql).bindparams(*typed).columns(
        column("balance", BigInteger), column("key_charged", Boolean),
        column("inserted", BigInteger))


#: Built once per channel and set of columns (a grid's runs name three more).
_STATEMENTS: dict[tuple[str, tuple[str, ...]], object] = {}


def insert_charged_run(session: Session, values: dict, *, channel: str) -> int:
    """Debit, charge the key, insert the run (`values`: its columns, at least REQUIRED)
    and its ledger row, and wake workers on `channel`, in one statement; returns the
    balance after.

    Raises InsufficientBalance (nothing was written) or SpendLimitExceeded (the balance
    was debited: roll back, see the module's docstring)."""
    columns = tuple(values)
    statement = _STATEMENTS.get((channel, columns))
    if statement is None:
        missing = set(REQUIRED) - set(columns)
        assert not missing, f"a run's values must name {sorted(missing)}"
        statement = _STATEMENTS[(channel, columns)] = _statement(channel, columns)
    balance, key_charged, inserted = session.execute(
        statement, {**values, "kind": EntryKind.CHARGE.value}).one()
    if balance is None:
        raise balance_too_low(values["cost_micros"])
    if values["api_key_id"] is not None and not key_charged:
        raise past_key_limit()
    assert inserted == 1, "a debited run must have been inserted with its ledger row"
    return balance
