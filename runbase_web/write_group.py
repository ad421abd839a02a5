"""Group commit: the short writes of concurrent threads share one SQLite transaction.

SQLite lets one writer in at a time. Under load a create held the write lock for about
3.5 ms on a 2-core machine, though its four statements alone take a fraction of that:
the rest was its thread waiting for the GIL and the CPU between statements, and the
commit. Writes that queue here go in together instead: the first thread to arrive leads,
runs every write waiting at that moment in one transaction, commits once and hands the
lead to the next thread waiting. The lock is then taken once per batch, and a batch
costs little more than one write.

What each caller sees is unchanged: when `run` returns, its write is committed; when it
raises, nothing of it was. A write that raises (a refusal: the balance is too low) rolls
the batch back, and the batch runs again with each write in a savepoint, so that only
that write is lost; writes must therefore be safe to run twice when the first run was
rolled back (they are plain statements of values fixed beforehand). A commit that fails
fails every write of the batch.

SQLite only: PostgreSQL takes row locks, and its writers do not queue behind each other.
"""
from __future__ import annotations

import threading
from typing import Callable

from sqlalchemy import Connection, Engine


class WriteGroupFailed(RuntimeError):
    """The batch a write belonged to could not be committed: the write was not saved."""


class _Waiting:
    """One thread's write, waiting for a leader to run it."""

    __slots__ = ("write", "done", "error", "leads")

    def __init__(self, write: Callable[[Connection], None]):
        self.write = write
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.leads = False  # set by the last leader: this thread runs the next batch


class WriteGroup:
    """Runs the writes of concurrent threads on one engine in shared transactions."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._start_empty()

    def _start_empty(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[_Waiting] = []
        self._leader_busy = False

    @property
    def queued(self) -> int:
        """How many writes wait for a leader to take them."""
        with self._lock:
            return len(self._queue)

    @property
    def leading(self) -> bool:
        """Whether a thread is running a batch now."""
        with self._lock:
            return self._leader_busy

    def after_fork(self) -> None:
        """Forget the parent's queue and lock (its threads did not come along)."""
        self._start_empty()

    def run(self, write: Callable[[Connection], None]) -> None:
        """Run `write(connection)` in a transaction, perhaps with other threads' writes,
        and return once it is committed; re-raise what `write` raised (nothing of it
        saved), or WriteGroupFailed when the batch could not be committed.

        The calling thread must hold no write transaction on this engine: the leader
        needs the write lock, and a thread waiting here while holding it would wait for
        itself.
        """
        waiting = _Waiting(write)
        with self._lock:
            self._queue.append(waiting)
            leads = not self._leader_busy
            self._leader_busy = True
        if not leads:
            waiting.done.wait()
            leads = waiting.leads
        if leads:
            self._lead()
        if waiting.error is not None:
            raise waiting.error

    def _lead(self) -> None:
        """Run and commit every write waiting now, then hand the lead on."""
        with self._lock:
            batch, self._queue = self._queue, []
        try:
            if not self._commit_all(batch) and len(batch) > 1:
                self._commit_each_in_savepoint(batch)
        except Exception as error:  # noqa: BLE001 - each writer raises its own WriteGroupFailed
            _fail_unsaved(batch, error)
        except BaseException as error:  # the leader is being stopped: fail the batch, stop
            _fail_unsaved(batch, error)
            raise
        finally:
            self._hand_on()
            for waiting in batch:
                waiting.done.set()

    def _commit_all(self, batch: list[_Waiting]) -> bool:
        """Run the batch's writes and commit; at the first write that raises, roll all of
        them back (that write keeps its error) and return False. No savepoints: they are
        two more statements a write, and refusals are rare."""
        with self.engine.connect() as connection:
            for waiting in batch:
                try:
                    waiting.write(connection)
                except Exception as error:  # noqa: BLE001 - re-raised in its own thread
                    connection.rollback()
                    waiting.error = error
                    return False
            connection.commit()
        return True

    def _commit_each_in_savepoint(self, batch: list[_Waiting]) -> None:
        """Run the batch again, each write in a savepoint, so that the ones that raise
        leave nothing and the others are committed."""
        with self.engine.connect() as connection:
            for waiting in batch:
                waiting.error = None
                _run_in_savepoint(connection, waiting)
            connection.commit()

    def _hand_on(self) -> None:
        """Make the first thread that queued meanwhile the next leader, or stand down."""
        with self._lock:
            if self._queue:
                successor = self._queue[0]
                successor.leads = True
                successor.done.set()
            else:
                self._leader_busy = False


def _run_in_savepoint(connection: Connection, waiting: _Waiting) -> None:
    """One write; anything it raises rolls back its savepoint and is kept for its thread."""
    savepoint = connection.begin_nested()
    try:
        waiting.write(connection)
    except Exception as error:  # noqa: BLE001 - re-raised in the writer's own thread
        savepoint.rollback()
        waiting.error = error
    else:
        savepoint.commit()


def _fail_unsaved(batch: list[_Waiting], cause: BaseException) -> None:
    """After a failed commit (or a leader stopped mid-batch), every write that had no
    error of its own gets one, caused by `cause`: none of them was saved."""
    for waiting in batch:
        if waiting.error is None:
            waiting.error = WriteGroupFailed("The database could not save this write; "
                                             "nothing was changed.")
            waiting.error.__cause__ = cause
