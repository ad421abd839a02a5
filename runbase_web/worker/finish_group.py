"""Group commit of succeeded runs: the worker's threads finish their runs together.

A run that succeeded costs one write transaction: its files' rows, the run marked
succeeded (and its webhook queued). Run by run, those transactions line up behind
each other: one writer at a time on SQLite, one commit each on PostgreSQL, and under
the GIL a thread holding SQLite's write lock waits for the other threads' Python before
it can commit. Measured on a 0 ms provider, a worker's threads spent a quarter of their
time queueing for that lock, and it, not the CPU, set the worker's pace.

So a thread whose outputs are stored hands its run to the group and waits. If no
transaction of the group is running, it runs one for every run handed over by then;
otherwise the thread in charge, when its transaction ends, passes the next batch to
one of the waiting threads. Each run still ends exactly once (mark_succeeded's
conditional UPDATE), and its thread learns whether it was the one that ended it. When a
shared transaction fails, each of its runs is tried again in a transaction of its own,
so one run's problem never fails another's finish.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from flask import Flask

from .. import state
from ..extensions import db
from ..models import StoredFile
from ..services import files, runs

_KEY = "runbase.finish_group"


@dataclass(eq=False)
class _Finish:
    run_id: str
    rows: list[StoredFile]
    done: threading.Event = field(default_factory=threading.Event)
    ended: bool = False
    error: BaseException | None = None
    #: This thread is to run the next batch (handed over by the one that ran the last).
    leads: bool = False


class FinishGroup:
    """Ends succeeded runs in shared transactions (one per batch of runs handed over
    while the previous batch was being written)."""

    def __init__(self, app: Flask):
        self.app = app
        self._lock = threading.Lock()
        self._waiting: list[_Finish] = []
        self._busy = False

    def succeed(self, run_id: str, rows: list[StoredFile]) -> bool:
        """Record `rows` (saved outputs) and mark the run succeeded; False if it had already
        ended (its files are then discarded). Raises what the transaction raised."""
        entry = _Finish(run_id, rows)
        with self._lock:
            self._waiting.append(entry)
            entry.leads = not self._busy
            self._busy = True
        if not entry.leads:
            entry.done.wait()
        if entry.leads:  # first in, or handed the next batch
            self._run_batch()
        if entry.error is not None:
            raise entry.error
        return entry.ended

    def _run_batch(self) -> None:
        with self._lock:
            batch, self._waiting = self._waiting, []
        try:
            self._write(batch)
        finally:
            with self._lock:
                successor = self._waiting[0] if self._waiting else None
                self._busy = successor is not None
            for entry in batch:
                entry.done.set()
            if successor is not None:
                successor.leads = True
                successor.done.set()

    def _write(self, batch: list[_Finish]) -> None:
        """One transaction for the batch; if it fails, one per run."""
        try:
            self._transaction(batch)
            return
        except Exception as error:
            if len(batch) == 1:
                batch[0].error = error
                return
        for entry in batch:
            try:
                self._transaction([entry])
            except Exception as error:
                entry.error = error

    def _transaction(self, batch: list[_Finish]) -> None:
        public_url = self.app.config["PUBLIC_URL"]
        storage = state.storage(self.app)
        with self.app.app_context():
            session = db.state(self.app).factory()
            try:
                files.record_outputs(session, [row for entry in batch for row in entry.rows])
                ended = []
                for entry in batch:
                    paths = [files.url_path(row) for row in entry.rows]
                    ended.append(runs.mark_succeeded(session, entry.run_id, paths,
                                                     public_url=public_url))
                    if not ended[-1]:  # ended meanwhile (e.g. timed out): drop its files
                        files.discard_run_files(session, storage, entry.run_id)
                session.commit()
            except BaseException:
                session.rollback()
                raise
            finally:
                session.close()
        for entry, was_ended in zip(batch, ended):
            entry.ended = was_ended


def finish_group(app: Flask) -> FinishGroup:
    """The app's finish group (one per app and process)."""
    group = app.extensions.get(_KEY)
    if group is None:
        group = app.extensions.setdefault(_KEY, FinishGroup(app))
    return group
