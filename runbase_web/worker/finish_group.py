"""Writing succeeded runs: their files' rows, the run marked succeeded (and its webhook
queued), for many runs in one transaction.

A worker thread whose run's outputs are saved does not write them itself: it hands
the run to its worker (execute.Step.outputs) and goes on to its next run. The claim
loop writes every run handed over by then in its next claim transaction
(claim.claim_work), the one that also leases the threads' next runs, so a busy worker
takes the database's write lock once for both. Written run by run, those transactions
lined up behind each other (one writer at a time on SQLite, one commit each on
PostgreSQL) and the threads waited for them; written in a transaction of their own
beside the claims, a batch and a claim still queued for SQLite's lock, and threads
stood idle waiting for the claim.

Each run still ends exactly once (mark_succeeded's conditional UPDATE). When a shared
transaction fails, each of its runs is written again in a transaction of its own
(write_each), so one run's problem never fails another's finish.
"""
from __future__ import annotations

from dataclasses import dataclass

from flask import Flask
from sqlalchemy.orm import Session

from .. import state
from ..extensions import db
from ..models import StoredFile
from ..services import files, runs


@dataclass(frozen=True)
class Finished:
    """A run whose provider succeeded and whose outputs are saved, to be written."""

    run_id: str
    rows: list[StoredFile]
    #: Where its webhook goes, if it has one (the worker sends it once written).
    webhook_url: str | None = None


def write_finished(session: Session, app: Flask, batch: list[Finished]) -> list[bool]:
    """In the session's transaction: record each run's files and mark it succeeded;
    per run, False if it had already ended (e.g. timed out or canceled), whose files
    are then discarded."""
    if not batch:
        return []
    public_url = app.config["PUBLIC_URL"]
    files.record_outputs(session, [row for item in batch for row in item.rows])
    ended = []
    for item in batch:
        paths = [files.url_path(row) for row in item.rows]
        ended.append(runs.mark_succeeded(session, item.run_id, paths, public_url=public_url))
        if not ended[-1]:
            files.discard_run_files(session, state.storage(app), item.run_id)
    return ended


def write_each(app: Flask, batch: list[Finished]) -> list[tuple[bool, BaseException | None]]:
    """Each run in a transaction of its own (after a shared one failed): per run,
    (whether this ended it, what its transaction raised). A run whose write fails is
    left to its lease's expiry, and another claim tries it again."""
    outcomes = []
    for item in batch:
        with app.app_context():
            session = db.state(app).factory()
            try:
                outcomes.append((write_finished(session, app, [item])[0], None))
                session.commit()
            except Exception as error:  # noqa: BLE001 - reported per run
                session.rollback()
                outcomes.append((False, error))
            finally:
                session.close()
    return outcomes
