"""Billing: the ledger history (pages and CSV), operator credit and Stripe top-ups.
Money is integer micro-USD; dollars are read and written by runbase_web.money."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import InsufficientBalance, RunbaseError
from ..models import EntryKind, LedgerEntry, User
from ..money import MICROS_PER_USD, decimal_text, format_usd
from . import ledger

#: History rows per page on Settings → Credits.
LEDGER_PAGE_SIZE = 50
#: Rows fetched per query while streaming the CSV, so memory stays flat for long histories.
CSV_BATCH = 500
#: The most an operator may grant or adjust in one go; a typo of a few zeros is refused.
MAX_OPERATOR_CREDIT_MICROS = 1_000_000 * MICROS_PER_USD
NOTE_MAX = 500
#: Cells a spreadsheet would read as a formula (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


# --- operator credit (admin page and `flask add-credit`) -----------------------------------


def operator_credit(session: Session, user_id: int, amount_micros: int, *, adjust: bool,
                    note: str, by: str | None = None) -> LedgerEntry:
    """An operator's grant (positive, ledger `grant`) or adjustment (either sign, `adjust`).

    The note is required (it is the only record of why) and names the admin (`by`) when
    given; an adjustment never takes the balance below zero. Errors name the form field.
    """
    note = note.strip()
    if not note:
        raise RunbaseError("Say why, for the ledger.", field="note")
    if by:
        note = f"{note} (by {by})"
    if len(note) > NOTE_MAX:
        raise RunbaseError(f"Notes are at most {NOTE_MAX} characters.", field="note")
    if amount_micros == 0:
        raise RunbaseError("The amount must not be zero.", field="amount")
    if not adjust and amount_micros < 0:
        raise RunbaseError("A grant must be positive; use an adjustment to take credit away.",
                           field="amount")
    kind = EntryKind.ADJUST if adjust else EntryKind.GRANT
    try:
        return ledger.credit(session, user_id, amount_micros, kind=kind, note=note)
    except InsufficientBalance:
        balance = session.get(User, user_id).balance_micros
        raise InsufficientBalance(
            f"That would take the balance below zero: it is {format_usd(balance)}.",
            field="amount") from None


def recent_entries(session: Session, user_id: int, limit: int = 20) -> list[LedgerEntry]:
    """The user's newest ledger entries."""
    return list(session.scalars(select(LedgerEntry).where(LedgerEntry.user_id == user_id)
                                .order_by(LedgerEntry.id.desc()).limit(limit)))


# --- Stripe top-ups ----------------------------------------------------------------------


def record_topup(session: Session, user_id: int, amount_micros: int, *,
                 checkout_session_id: str) -> LedgerEntry | None:
    """Credit a paid Stripe Checkout session, once: None if this session was already
    credited (a replayed or concurrently duplicated webhook)."""
    return ledger.credit(session, user_id, amount_micros, kind=EntryKind.TOPUP,
                         note="Stripe Checkout top-up", external_ref=checkout_session_id)


# --- history -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerPage:
    """One page of history, newest first, with keyset cursors for its neighbours."""

    entries: list[LedgerEntry]
    #: `after` cursor of the next newer page, None on the newest page.
    newer: int | None
    #: `before` cursor of the next older page, None on the oldest page.
    older: int | None


def ledger_page(session: Session, user_id: int, *, before: int | None = None,
                after: int | None = None, size: int = LEDGER_PAGE_SIZE) -> LedgerPage:
    """A page of the user's ledger, newest first. Keyset on the entry id (ids only grow),
    so pages stay put while new entries arrive: `before` pages back, `after` forward."""
    mine = select(LedgerEntry).where(LedgerEntry.user_id == user_id)
    if after is not None:
        rows = list(session.scalars(mine.where(LedgerEntry.id > after)
                                    .order_by(LedgerEntry.id.asc()).limit(size)))[::-1]
    else:
        if before is not None:
            mine = mine.where(LedgerEntry.id < before)
        rows = list(session.scalars(mine.order_by(LedgerEntry.id.desc()).limit(size)))
    if not rows:
        return LedgerPage([], None, None)
    return LedgerPage(rows, _newer_cursor(session, user_id, rows[0].id),
                      _older_cursor(session, user_id, rows[-1].id))


def _newer_cursor(session: Session, user_id: int, first_id: int) -> int | None:
    newer = session.scalar(select(LedgerEntry.id).where(
        LedgerEntry.user_id == user_id, LedgerEntry.id > first_id).limit(1))
    return first_id if newer is not None else None


def _older_cursor(session: Session, user_id: int, last_id: int) -> int | None:
    older = session.scalar(select(LedgerEntry.id).where(
        LedgerEntry.user_id == user_id, LedgerEntry.id < last_id).limit(1))
    return last_id if older is not None else None


CSV_HEADER = ("date_utc", "kind", "amount_usd", "amount_micros", "balance_after_usd",
              "balance_after_micros", "run_id", "reference", "note")


def csv_safe(text: str | None) -> str:
    """Text for a CSV cell that a spreadsheet shows as text, never runs as a formula."""
    text = text or ""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _csv_row(entry: LedgerEntry) -> tuple:
    return (entry.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"), entry.kind,
            decimal_text(entry.amount_micros), entry.amount_micros,
            decimal_text(entry.balance_after_micros), entry.balance_after_micros,
            csv_safe(entry.run_id), csv_safe(entry.external_ref), csv_safe(entry.note))


def ledger_csv(session: Session, user_id: int) -> Iterator[str]:
    """The user's whole ledger as CSV text chunks, newest first, fetched in batches."""
    yield _csv_line(CSV_HEADER)
    before = None
    while True:
        query = select(LedgerEntry).where(LedgerEntry.user_id == user_id)
        if before is not None:
            query = query.where(LedgerEntry.id < before)
        batch = list(session.scalars(query.order_by(LedgerEntry.id.desc()).limit(CSV_BATCH)))
        if not batch:
            return
        yield "".join(_csv_line(_csv_row(entry)) for entry in batch)
        before = batch[-1].id


def _csv_line(values: tuple) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(values)
    return buffer.getvalue()
