"""The worker: a claim loop, a bounded thread pool, and a lease heartbeat.

The same class runs embedded in `python app.py` and standalone in
`flask --app app worker`. Sync provider calls occupy a pool thread; async runs
go back to the database between polls, so a few threads serve many runs, and the
worker keeps nothing about them between polls.

The claim loop asks the database only when it has free threads and something can be
due: a wake-up from outside (a run was created, canceled, or a webhook resent), the
known time the next waiting run falls due (read in each claim that took everything
due, and moved earlier by this worker's own releases), a backlog (the last claim
filled every free thread), or, as the fallback for everything else, WORKER_POLL_SECONDS
since the last claim. A standalone worker hears of new runs through PostgreSQL's NOTIFY
(listener.py) or, on SQLite, by watching for other connections' commits
(commit_watch.py). On PostgreSQL one worker, the first responder, starts new runs at
once; while turns are short, the others take a new run only once it has waited
HELPER_LAG_SECONDS, or HELPER_BUSY_HOST_LAG_SECONDS on a machine with no CPU to spare
(host_cpu.py). One claim transaction leases a whole batch, and writes
the runs that succeeded since the last one (their threads went straight on to other
runs); succeeded runs are written at once, with a claim or alone. Webhook deliveries
have their own loop and pool (webhook_delivery.DeliveryLoop), told when a run this
worker ended has a webhook.
"""
from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

from flask import Flask

from ..extensions import db
from ..models import utcnow
from .claim import Claim, ClaimedRun, Release, claim_work, earliest, renew_leases
from .commit_watch import CommitWatcher, database_file
from .execute import Step, cancel_upstream_job, execute_run
from .finish_group import Finished, write_each
from .host_cpu import HostCpu
from .listener import RunListener
from .webhook_delivery import DeliveryLoop

log = logging.getLogger(__name__)
#: With a backlog, a freed thread waits this long for others to free up before claiming,
#: so one claim transaction leases several runs instead of one per finished turn.
CLAIM_LINGER_SECONDS = 0.01
#: A waiting run is claimed this long after it falls due, with every other run due by
#: then: polls seconds apart fall due at scattered moments, and a few milliseconds late
#: costs nothing, while one claim per poll would cost a transaction each. New runs do
#: not wait (their wake-up claims at once).
CLAIM_GATHER_SECONDS = 0.02
#: A poll that stays pending is written back by the next claim transaction, which comes
#: at the latest this long after it (the run stays leased meanwhile, to this worker).
RELEASE_DELAY_SECONDS = 0.5
#: With creates arriving faster than this apart, runs announced by NOTIFY are claimed at
#: most once per this many seconds per worker: every worker hears every NOTIFY, and a
#: claim per create per worker would spend more on empty claims than on runs as workers
#: are added. An idle worker still claims at once.
NOTIFY_GATHER_SECONDS = 0.05
#: On PostgreSQL one worker is the first responder (listener.py) and starts new runs as
#: soon as it hears of them; the others take a new run only once it has waited this long
#: unclaimed, that is when the first responder falls behind. Every worker claiming every
#: new run at once split the runs into claims of one or two each, and with a 0 ms
#: provider on 2 cores four workers made 0.83 of one worker's runs/s (bench/scale.py).
#: Only while turns are short: with turns of QUEUE_AHEAD_TURN_SECONDS or more, claims
#: are few whoever makes them, and a new run would wait the lag for a free thread that
#: the first responder may not have (four workers at a 2 s provider made 3.75x of one
#: worker's runs/s instead of 3.9x). Runs coming back for a poll or a retry are claimed
#: by whoever is free, at once.
HELPER_LAG_SECONDS = 0.2
#: ... and this long while the machine has less than SPARE_CORES of CPU idle: a helper
#: on the first responder's machine then has no CPU to add, and each run it takes
#: splits claims and batches further (at a 0 ms provider on 2 cores, four workers used
#: about a tenth more CPU per run than one; with this, they made 15 % more runs/s than
#: before, in two interleaved pairs of bench/scale.py). A run still never waits longer.
HELPER_BUSY_HOST_LAG_SECONDS = 2.0
#: Idle CPU, in cores, below which a machine has none to spare for a helper (host_cpu).
SPARE_CORES = 0.3
#: Runs are queued ahead of free threads only while turns take less than this on average:
#: a queued run waits for one of this worker's threads, which costs nothing when turns are
#: about as short as a claim, and delays a run another worker could start when they are
#: long (with a 2 s provider, 4 workers made 3.0x of one worker's runs/s instead of 3.9x).
QUEUE_AHEAD_TURN_SECONDS = 0.25
#: After a failed claim (the database is down or restarting), the loop waits this long,
#: or the poll interval if shorter, before the next try.
CLAIM_RETRY_SECONDS = 1.0


class Worker:
    """Claims due runs and executes them on a thread pool until stopped."""

    def __init__(self, app: Flask, *, threads: int | None = None, standalone: bool = False):
        self.app = app
        #: Runs in a process of its own (`flask --app app worker`): creates in the web
        #: process cannot wake it in process.
        self.standalone = standalone
        self.threads = threads or app.config["WORKER_THREADS"]
        self.lease_seconds = app.config["LEASE_SECONDS"]
        self.poll_seconds = app.config["WORKER_POLL_SECONDS"]
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        #: With a backlog, claim once this many threads are free (or the linger is over).
        self.claim_batch = max(1, self.threads // 2)
        #: With a backlog of short turns, runs leased beyond the threads, queued here for
        #: the next thread that comes free: a thread then never waits for a claim
        #: transaction (a quarter of the pool stood idle so at a 0 ms provider). A stop
        #: gives them back. See QUEUE_AHEAD_TURN_SECONDS.
        self.queue_ahead = self.claim_batch
        self._queued: dict[str, tuple[Future, ClaimedRun]] = {}
        #: Queued runs dropped by a stop whose attempt the claim had counted: they never
        #: called their provider, so giving them back takes the attempt back too.
        self._never_started: list[str] = []
        self._turn_seconds: float | None = None  # a moving average of a run's turn
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="runbase-run")
        self._active: set[str] = set()
        #: Succeeded runs whose threads have gone on to other runs, not yet written:
        #: still leased (the heartbeat renews them) until the next claim writes them.
        self._finishing: set[str] = set()
        #: Ended runs whose upstream job this worker is asking the provider to stop.
        self._canceling: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # What the claim loop knows (under _lock); times are time.monotonic().
        self._look = True  # claim at the next turn: started, or woken from outside
        #: When a NOTIFY first said a run was created somewhere since the last claim, and
        #: when the latest did (see run_created).
        self._heard_at: float | None = None
        self._last_heard: float | None = None
        self._peek_deliveries = True  # ... and see whether a webhook delivery is due
        self._backlog = False  # the last claim filled every free thread
        self._due: float | None = None  # when the next known waiting run falls due
        self._freed_at: float | None = None  # when a thread first came free since the claim
        self._released_due: float | None = None  # the earliest own release since the claim
        self._releases: list[Release] = []  # pending polls to write back with the next claim
        self._releases_since: float | None = None  # when the oldest of them was handed over
        self._finished: list[Finished] = []  # succeeded runs to write with the next claim
        self._draining = False  # stopped: turns that end write their own polls and finishes
        self._last_claim = 0.0
        self._paused_until = 0.0  # no claim before this, after a failed one
        self.deliveries = DeliveryLoop(app, poll_seconds=self.poll_seconds)
        self._listener: RunListener | None = None
        self._watcher: CommitWatcher | None = None
        self.host_cpu = HostCpu()

    def start(self) -> "Worker":
        """Start the claim loop and the heartbeat in background threads."""
        for target, name in ((self._loop, "runbase-claim"), (self._heartbeat, "runbase-lease")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        self.deliveries.start()
        engine = db.state(self.app).engine
        watched = database_file(engine) if self.standalone else None
        if engine.dialect.name == "postgresql":  # woken by NOTIFY on create; polling stays
            self._listener = RunListener(engine, self.run_created,
                                         gather_seconds=NOTIFY_GATHER_SECONDS,
                                         deaf_seconds=self.fresh_lag).start()
        elif watched:  # SQLite, standalone: woken by other processes' commits
            self._watcher = CommitWatcher(watched, self.run_created).start()
        log.info("worker %s started with %d threads", self.owner, self.threads)
        return self

    def wake(self) -> None:
        """Look for due runs now instead of at the next poll, and see whether a webhook
        delivery is due (a run was created, canceled, or a delivery resent in this
        process). The delivery check rides on the next run claim's transaction, so a
        create costs the delivery loop nothing; with every thread busy, that claim waits
        for a free thread, and the delivery loop's sweep bounds the wait."""
        with self._lock:
            self._look = True
            self._peek_deliveries = True
        self._wake.set()

    def run_created(self) -> None:
        """A run was created somewhere (PostgreSQL's NOTIFY), or another connection
        committed to the SQLite database (commit_watch): look for due runs, at once
        if this worker has not claimed within NOTIFY_GATHER_SECONDS, else when that has
        passed (one claim then takes every run announced meanwhile); a worker behind
        another first responder looks later (fresh_lag)."""
        now = time.monotonic()
        with self._lock:
            self._heard_at = earliest(self._heard_at, now)
            self._last_heard = now
        self._wake.set()

    def fresh_lag(self) -> float:
        """How old a new run must be before this worker takes it: 0, except for a worker
        that listens for NOTIFY, has found another worker is the first responder, and has
        turns that are not known to be long: HELPER_LAG_SECONDS, or
        HELPER_BUSY_HOST_LAG_SECONDS while its machine has no CPU to spare. Until its
        listener has asked (just after start, or after a lost connection) it waits for no
        one: a claim held back then could leave its threads full with no backlog known,
        and so nothing queued ahead until a thread came free."""
        listener = self._listener
        if listener is None or not listener.behind_another:
            return 0.0
        turn = self._turn_seconds
        if turn is not None and turn >= QUEUE_AHEAD_TURN_SECONDS:
            return 0.0
        idle = self.host_cpu.idle_cores()
        if idle is not None and idle < SPARE_CORES:
            return HELPER_BUSY_HOST_LAG_SECONDS
        return HELPER_LAG_SECONDS

    def stop(self, wait: bool = True) -> None:
        """Stop claiming; with `wait`, let runs in progress reach their next resting point."""
        self._stop.set()
        self._wake.set()
        if self._listener is not None:
            self._listener.stop()
        if self._watcher is not None:
            self._watcher.stop()
        for thread in self._threads:
            thread.join(timeout=10)
        self._drop_queued()
        self._pool.shutdown(wait=wait, cancel_futures=True)
        self._write_back()
        self.deliveries.stop(wait=wait)

    def active_runs(self) -> list[str]:
        """Ids of the runs this worker is executing right now, or has queued for a thread."""
        with self._lock:
            return list(self._active)

    def held_runs(self) -> list[str]:
        """Ids of every run this worker holds a lease on: the active runs, and those that
        succeeded and wait to be written with the next claim."""
        with self._lock:
            return list(self._active | self._finishing)

    def _loop(self) -> None:
        while not self._stop.is_set():
            # Clear before deciding: a wake that lands during the claim is not lost.
            self._wake.clear()
            slots, peek, releases, finished = self._slots_to_claim()
            if slots or finished:
                self._claim(slots, peek, releases, finished)
            self._wake.wait(self._seconds_to_wait())

    def _free_slots(self) -> int:
        """Runs to claim to keep every thread busy, and with a backlog queue_ahead more
        (under _lock); none while the worker drains for a graceful stop. Without a
        backlog nothing is queued: a run due now goes to a worker with a free thread."""
        if self._draining:
            return 0
        queue = self._backlog and (self._turn_seconds or 0.0) < QUEUE_AHEAD_TURN_SECONDS
        ahead = self.queue_ahead if queue else 0
        return self.threads + ahead - len(self._active) - len(self._canceling)

    def _slots_to_claim(self) -> tuple[int, bool, list[Release], list[Finished]]:
        """How many runs to claim now (0: none can be due, or no thread is free), whether
        to look for a due webhook delivery in the same transaction, and the pending
        polls and succeeded runs that transaction writes. Succeeded runs are written at
        once, with a claim if one is wanted (with a backlog, their freed threads want
        one), else alone."""
        now = time.monotonic()
        with self._lock:
            if now < self._paused_until:
                return 0, False, [], []
            finished, self._finished = self._finished, []
            free = self._free_slots()
            wanted = free > 0 and ((bool(finished) and self._backlog)
                                   or self._claim_wanted(now, free))
            if not wanted:
                return 0, False, [], finished
            peek, self._look, self._peek_deliveries = self._peek_deliveries, False, False
            self._heard_at = None
            self._freed_at = self._released_due = self._releases_since = None
            releases, self._releases = self._releases, []
            return free, peek, releases, finished

    def _claim_wanted(self, now: float, free: int) -> bool:
        """Whether something can be due (under _lock): a wake-up from outside, a waiting
        run's due time (plus the gathering delay), the fallback poll, a backlog with
        enough threads free (or freed long enough ago), or pending polls to write back."""
        if self._look or now - self._last_claim >= self.poll_seconds:
            return True
        if self._heard_at is not None and now >= self._heard_due():
            return True
        if self._due is not None and self._due + CLAIM_GATHER_SECONDS <= now:
            return True
        if self._backlog and (free >= self.claim_batch
                              or now - (self._freed_at or now) >= CLAIM_LINGER_SECONDS):
            return True
        return (self._releases_since is not None
                and now - self._releases_since >= RELEASE_DELAY_SECONDS)

    def _heard_due(self) -> float:
        """When to claim for the runs NOTIFY announced (under _lock; _heard_at is set)."""
        return max(self._heard_at + self.fresh_lag(), self._last_claim + NOTIFY_GATHER_SECONDS)

    def _seconds_to_wait(self) -> float | None:
        """Until the loop must look again, if nothing wakes it first (None: until woken)."""
        now = time.monotonic()
        with self._lock:
            if self._finished:  # written at once (after a failed claim's pause)
                return max(self._paused_until - now, 0.0)
            if self._free_slots() <= 0:
                # Nothing can be claimed before a thread comes free, and _turn_over wakes
                # the loop when one does. Counting down to the next poll instead would spin
                # once that time had passed: a core burnt while every thread waits on a
                # slow provider.
                return None
            if now < self._paused_until:
                return self._paused_until - now
            until = [self._last_claim + self.poll_seconds]
            if self._heard_at is not None:
                until.append(self._heard_due())
            if self._due is not None:
                until.append(self._due + CLAIM_GATHER_SECONDS)
            if self._backlog and self._freed_at is not None:
                until.append(self._freed_at + CLAIM_LINGER_SECONDS)
            if self._releases_since is not None:
                until.append(self._releases_since + RELEASE_DELAY_SECONDS)
        return max(min(until) - now, 0.0)

    def _claim(self, slots: int, peek: bool, releases: list[Release],
               finished: list[Finished]) -> None:
        started = time.monotonic()
        try:
            lag = self.fresh_lag()
            claim = claim_work(self.app, self.owner, slots, self.lease_seconds,
                               releases=releases, finished=finished, peek_deliveries=peek,
                               fresh_lag=lag)
        except Exception:
            log.exception("worker %s: claiming failed; trying again shortly", self.owner)
            # Perhaps one succeeded run's write broke the transaction: each is written
            # alone, and unless all of them failed too, the claim is tried again at once.
            pause = not self._write_each(finished)
            with self._lock:
                self._look = self._look or bool(slots)  # what this claim was for is owed
                self._peek_deliveries = self._peek_deliveries or peek
                self._hand_back(releases, started)
                if pause:
                    self._last_claim, self._backlog = started, False
                    self._paused_until = started + min(CLAIM_RETRY_SECONDS, self.poll_seconds)
            return
        self._settle(finished, [(ended, None) for ended in claim.ended])
        if not slots:
            return
        self._note_claim(claim, started, lag)
        for run in claim.runs:
            with self._lock:
                self._queued[run.id] = (self._pool.submit(self._execute, run), run)
        for run_id in claim.cancels:
            self._pool.submit(self._cancel_upstream, run_id)
        if claim.delivery_due:
            self.deliveries.wake()

    def _hand_back(self, releases: list[Release], since: float) -> None:
        """Keep pending polls for the next claim (under _lock)."""
        if releases:
            self._releases[:0] = releases
            self._releases_since = min(self._releases_since or since, since)

    def _write_back(self) -> None:
        """On stop: write back the polls still pending and the succeeded runs not yet
        written, so their runs need not wait for their leases to expire; turns still
        running (stop without waiting) write their own from now on."""
        with self._lock:
            self._draining = True
            releases, self._releases = self._releases, []
            finished, self._finished = self._finished, []
        self._write_alone(releases, finished)

    def _write_alone(self, releases: list[Release], finished: list[Finished]) -> None:
        """Write pending polls and succeeded runs in a transaction of their own."""
        if not releases and not finished:
            return
        try:
            claim = claim_work(self.app, self.owner, 0, self.lease_seconds,
                               releases=releases, finished=finished)
        except Exception:
            log.exception("worker %s: writing back %d polls and %d succeeded runs failed; "
                          "the runs are written one by one, the polls' leases expire",
                          self.owner, len(releases), len(finished))
            self._write_each(finished)
        else:
            self._settle(finished, [(ended, None) for ended in claim.ended])

    def _write_each(self, finished: list[Finished]) -> bool:
        """After a shared write failed: each succeeded run in a transaction of its own;
        True if any of them was written."""
        outcomes = write_each(self.app, finished)
        self._settle(finished, outcomes)
        return any(error is None for _ended, error in outcomes)

    def _settle(self, finished: list[Finished],
                outcomes: list[tuple[bool, BaseException | None]]) -> None:
        """Succeeded runs were written, or their writes failed: none is held here any more.
        `outcomes` gives, per run, whether the write ended it and what it raised."""
        with self._lock:
            self._finishing.difference_update(item.run_id for item in finished)
        for item, (ended, error) in zip(finished, outcomes):
            if error is not None:
                # Its lease expires and another claim tries it again (attempts bound it).
                log.error("run %s: recording its outputs failed: %r", item.run_id, error)
            elif ended and item.webhook_url:
                self.deliveries.wake()  # its webhook was queued with the outcome

    def _note_claim(self, claim: Claim, started: float, lag: float) -> None:
        """Record what the claim took and what it learnt about the next due time."""
        due = None
        if claim.next_due is not None:
            due = started + max((claim.next_due - utcnow()).total_seconds(), 0.0)
        with self._lock:
            self._active.update(run.id for run in claim.runs)
            self._canceling.update(claim.cancels)
            self._last_claim, self._backlog = started, not claim.short
            # A claim that took everything due knows the next due time, but perhaps not
            # of runs this worker released while it ran; with a backlog, freed threads
            # claim again anyway.
            self._due = earliest(due, self._released_due)
            # Runs announced less than `lag` before the claim were too new for it: look
            # again when the latest of them is old enough, in case they still wait.
            if lag and self._last_heard is not None and self._last_heard > started - lag:
                self._heard_at = earliest(self._heard_at, self._last_heard)

    def _cancel_upstream(self, run_id: str) -> None:
        try:
            cancel_upstream_job(self.app, run_id)
        finally:
            self._turn_over(canceled=run_id)

    def _execute(self, run: ClaimedRun) -> None:
        with self._lock:
            self._queued.pop(run.id, None)
        step = Step()
        started = time.monotonic()
        try:
            step = execute_run(self.app, run, self.owner)
        finally:
            took = time.monotonic() - started
            with self._lock:
                last = self._turn_seconds
                self._turn_seconds = took if last is None else last + 0.3 * (took - last)
            self._turn_over(run=run, step=step)
        if step.ended and run.webhook_url:
            # Its webhook was queued with the outcome: send it without waiting.
            self.deliveries.wake()

    def _turn_over(self, *, run: ClaimedRun | None = None, canceled: str | None = None,
                   step: Step | None = None) -> None:
        """A thread came free: note when the run it held falls due again, and hand its
        pending poll or succeeded run to the claim loop to write (or, once the worker is
        stopping and no claim will come, write it here)."""
        step = step or Step()
        now = time.monotonic()
        release = [step.release] if step.release is not None else []
        finished = [] if step.outputs is None else [
            Finished(run.id, step.outputs, run.webhook_url)]
        with self._lock:
            self._active.discard(run.id if run is not None else None)
            self._canceling.discard(canceled)
            self._finishing.update(item.run_id for item in finished)
            if self._freed_at is None:
                self._freed_at = now
            if step.check_after is not None:
                self._due = earliest(self._due, now + step.check_after)
                self._released_due = earliest(self._released_due, now + step.check_after)
            write_here = self._draining
            if not write_here:
                self._hand_back(release, now)
                self._finished += finished
        if write_here:
            self._write_alone(release, finished)
        self._wake.set()

    def _heartbeat(self) -> None:
        # Renew well inside the lease so one slow renewal never loses a live run. One
        # UPDATE for every run this worker holds, none when it holds none.
        interval = self.lease_seconds / 3
        while not self._stop.wait(interval):
            try:
                with self.app.app_context():
                    renew_leases(db.session, self.owner, self.held_runs(), self.lease_seconds)
            except Exception:
                log.exception("worker %s: lease renewal failed", self.owner)

    # --- graceful stop (worker/shutdown.py) ---------------------------------------------

    def stop_claiming(self) -> None:
        """Take no new runs or upstream cancels; those in progress go on, leases renewed.
        Polls still waiting to be written back are written now (no claim will come to
        write them), and turns that end from now on write their own. Runs queued for a
        thread are dropped: their leases are given back (shutdown.drain) or expire."""
        self._write_back()
        self._drop_queued()

    def _drop_queued(self) -> None:
        with self._lock:
            queued, self._queued = self._queued, {}
        dropped = [run for future, run in queued.values() if future.cancel()]
        with self._lock:
            self._active.difference_update(run.id for run in dropped)
            self._never_started += [run.id for run in dropped if run.attempt_counted]

    def never_started(self) -> list[str]:
        """Runs this worker leased and counted an attempt for, then dropped from its queue
        on stopping without calling their provider (see shutdown.drain)."""
        with self._lock:
            return list(self._never_started)

    def busy_slots(self) -> int:
        """Pool threads taken by runs and upstream cancels right now (runs queued for a
        thread not counted)."""
        with self._lock:
            return len(self._active) - len(self._queued) + len(self._canceling)

