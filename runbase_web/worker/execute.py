"""Executing one claimed run: call its adapter, then release, retry, finish or fail it.

A run is read (and, before a provider call that starts it, its attempt counted) in the
claim's transaction (claim.claim_work), which leases a whole batch of runs. A poll that
stays pending and a run that succeeded write nothing themselves: the worker hands them
to the next claim transaction, so on a busy worker they cost a share of one transaction
each. Any other outcome (a new job, a retry, a failure) is written in one transaction
of its own. No database transaction is open while a provider is working.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import timedelta

from flask import Flask
from sqlalchemy.orm import Session

from .. import faults, net, recipe, state
from ..extensions import db
from ..models import Run, StoredFile, utcnow
from ..providers.base import Done, Job, Pending, ProviderError
from ..providers.media import sniff_output_type
from ..providers.registry import ProviderContext, adapter_for
from ..services import callbacks, files, runs, uploads
from ..catalog import ModelSpec
from ..urls import public_base_url
from .claim import ClaimedRun, Release, release

log = logging.getLogger(__name__)
#: Longest wait between retries of a failing provider call.
MAX_BACKOFF_SECONDS = 60.0
#: Longest wait between polls of an upstream job that keeps failing to answer.
MAX_POLL_BACKOFF_SECONDS = 30.0
#: The first step of exponential backoff; each further failure doubles it.
BASE_BACKOFF_SECONDS = 1.0
#: The shortest wait when the provider gave one: "Retry-After: 0" must not mean "hammer".
MIN_HINTED_WAIT_SECONDS = 1.0
#: At most this much jitter on top of a provider's hint, so long hints are not stretched.
MAX_HINT_JITTER_SECONDS = 5.0
#: How many times a worker asks a provider to stop a job before it records "failed".
CANCEL_ATTEMPTS = 5
#: Key of the worker's retry bookkeeping inside Run.upstream_state; adapters never see it.
RETRY_STATE_KEY = "_retries"


@dataclass(frozen=True)
class Step:
    """How a run's turn on a worker thread ended."""

    #: The run ended now (succeeded or failed); its webhook, if it has one, is queued.
    ended: bool = False
    #: The run went back to the pool, due again after this many seconds.
    check_after: float | None = None
    #: A poll that stayed pending, for the caller to write back (claim.claim_work).
    release: Release | None = None
    #: The run succeeded and these are its saved outputs: the worker records them and
    #: marks the run succeeded with its next claim (finish_group.py).
    outputs: list[StoredFile] | None = None


def execute_run(app: Flask, run: ClaimedRun, owner: str) -> Step:
    """Run one claimed run to its next resting point; never raises (an unexpected error
    leaves the run to its lease's expiry, and another claim retries it)."""
    with app.app_context():
        session = db.session
        try:
            return _execute(app, session, run, owner)
        except Exception:
            # The lease runs out and another claim retries; attempts bound the loop.
            session.rollback()
            log.exception("run %s: unexpected error in the worker", run.id)
            return Step()
        finally:
            db.state(app).session.remove()


def _execute(app: Flask, session: Session, run: ClaimedRun, owner: str) -> Step:
    if run.refusal is not None:
        ended = runs.mark_failed(session, run.id, message=run.refusal[0], code=run.refusal[1])
        runs.request_upstream_cancel(session, run.id)
        session.commit()
        return Step(ended=ended)
    spec = state.catalog(app).get(run.model)
    job = _job_for(run, spec)
    context = provider_context(app, run.adapter, callback_url=_callback_url(app, run))
    retries = dict((run.upstream_state or {}).get(RETRY_STATE_KEY) or {})
    callback = run.callback
    try:
        adapter = adapter_for(spec, context)
        faults.point("provider_call")
        result = _read_callback(adapter, job, callback)
        if result is None:
            result = adapter.poll(job) if job.upstream_id else adapter.start(job)
    except ProviderError as error:
        return _on_provider_error(app, session, job, owner, error, retries)
    if isinstance(result, Pending):
        return _release_pending(session, job, owner, result)
    return _finish(app, session, run, result, job=job, owner=owner, retries=retries)


def _release_pending(session: Session, job: Job, owner: str, result: Pending) -> Step:
    """The provider is still working. A poll of a known job only hands its release back
    (the worker writes it with its next claim); a new job's id is written at once, in one
    transaction, as it must be before any poll and a cancel may have raced its create."""
    if job.upstream_id is not None:
        check_at = utcnow() + timedelta(seconds=max(result.check_after, 0))
        return Step(check_after=result.check_after, release=Release(
            job.run_id, check_at, result.upstream_id, result.state))
    kept = release(session, job.run_id, owner, check_after=result.check_after,
                   upstream_id=result.upstream_id, upstream_state=result.state)
    if not kept and result.upstream_id:
        # Canceled while the provider was creating the job: stop the job it created.
        runs.request_upstream_cancel(session, job.run_id, upstream_id=result.upstream_id,
                                     upstream_state=result.state)
    session.commit()
    return Step(check_after=result.check_after if kept else None)


def _job_for(run: Run | ClaimedRun, spec: ModelSpec) -> Job:
    """The adapter's view of a run: its upstream state without the worker's retry counts
    (so an adapter that passes its state on never carries stale counts forward)."""
    state = run.upstream_state
    if state is not None:
        state = {key: value for key, value in state.items() if key != RETRY_STATE_KEY}
    return Job(run.id, spec, dict(run.input), run.deadline_at, run.attempts, run.upstream_id, state)


def provider_context(app: Flask, adapter: str | None = None, *,
                     callback_url: str | None = None) -> ProviderContext:
    """What adapters are built from in this app: provider variables, the fetcher, a reader
    of this server's own files (reference images from storage, not over HTTP), the
    adapter a run started with (`Run.adapter`; None, for a row from before that column,
    routes by the variables as catalog.effective_adapter says), and where its provider
    should call back (None: poll only)."""
    return ProviderContext(env=app.config["PROVIDER_ENV"], fetcher=state.fetcher(app),
                           adapter=adapter,
                           callback_url=callback_url,
                           callback_poll_seconds=app.config.get("CALLBACK_POLL_SECONDS"),
                           read_own_file=uploads.own_file_reader(
                               db.state(app).factory, state.storage(app)))


def _callback_url(app: Flask, run: Run) -> str | None:
    """Where the run's provider should call back (services/callbacks.py), or None."""
    if not app.config.get("PROVIDER_CALLBACKS", True):
        return None  # the operator's choice (a public URL providers cannot reach): poll
    return callbacks.callback_url(public_url=app.config.get("PUBLIC_URL", ""),
                                  secret_key=app.config["SECRET_KEY"],
                                  env=app.config["PROVIDER_ENV"], adapter=run.adapter,
                                  run_id=run.id)


def _read_callback(adapter, job: Job, callback: dict | None) -> Done | None:
    """What a verified callback taken from the run says of its job, through the adapter
    (as a poll's answer would be read); None to call the provider as usual: no callback,
    no job yet, or a callback about nothing usable."""
    if callback is None or job.upstream_id is None:
        return None
    return adapter.called_back(job, callback)


def cancel_upstream_job(app: Flask, run_id: str) -> None:
    """Ask the provider to stop the upstream job of an ended run (claimed by
    claim.lease_due_cancels) and record the outcome; retried with backoff, never raises."""
    with app.app_context():
        session = db.session
        try:
            _cancel_upstream_job(app, session, run_id)
        except Exception:
            session.rollback()
            log.exception("run %s: unexpected error while canceling its upstream job", run_id)
        finally:
            db.state(app).session.remove()


def _cancel_upstream_job(app: Flask, session: Session, run_id: str) -> None:
    run = session.get(Run, run_id)
    if run is None or run.upstream_cancel != runs.UPSTREAM_CANCEL_REQUESTED:
        session.rollback()
        return
    spec = state.catalog(app).get(run.model)
    job = _job_for(run, spec) if spec is not None else None
    context = provider_context(app, run.adapter)  # the adapter that holds the job
    retries = dict((run.upstream_state or {}).get(RETRY_STATE_KEY) or {})
    tries = retries.get("cancel", 0) + 1
    counted = {**(run.upstream_state or {}), RETRY_STATE_KEY: {**retries, "cancel": tries}}
    session.commit()  # no transaction stays open during the provider call
    try:
        if job is None:
            raise ProviderError(f"model {run.model} is no longer in the catalog")
        adapter_for(spec, context).cancel(job)
    except Exception as error:  # noqa: BLE001 - any failure is retried, then recorded
        log.warning("run %s: could not cancel upstream job %s (try %d): %s",
                    run_id, run.upstream_id, tries, error)
        wait = None if tries >= CANCEL_ATTEMPTS or job is None else backoff_seconds(tries, None)
        runs.record_upstream_cancel(session, run_id, sent=False, upstream_state=counted,
                                    retry_after=wait)
    else:
        runs.record_upstream_cancel(session, run_id, sent=True, upstream_state=counted)
    session.commit()


def jitter(low: float, high: float) -> float:
    """A random factor or offset in [low, high]; one place, so tests can pin it."""
    return random.uniform(low, high)


def backoff_seconds(failures: int, retry_after: float | None, *,
                    cap: float = MAX_BACKOFF_SECONDS) -> float:
    """Seconds to wait after `failures` failures in a row, never more than `cap`.

    With the provider's hint (Retry-After, RetryInfo): the hint, but at least
    MIN_HINTED_WAIT_SECONDS, plus up to half again (at most MAX_HINT_JITTER_SECONDS) of
    jitter, so "Retry-After: 0" is no immediate retry and runs throttled together do not
    come back in lockstep. Without one: exponential from BASE_BACKOFF_SECONDS, ±50 %.
    """
    if retry_after is not None:
        wait = max(retry_after, MIN_HINTED_WAIT_SECONDS)
        return min(wait + jitter(0.0, min(0.5 * wait, MAX_HINT_JITTER_SECONDS)), cap)
    step = BASE_BACKOFF_SECONDS * 2 ** min(max(failures - 1, 0), 30)
    return min(step * jitter(0.5, 1.5), cap)


def created_nothing(error: ProviderError) -> bool:
    """True for a throttle (429, "rate limited", "still creating"): the provider refused
    before doing anything, so the call cost nothing and is no attempt."""
    return error.retryable and error.code == "provider_busy"


def _on_provider_error(app: Flask, session: Session, job: Job, owner: str,
                       error: ProviderError, retries: dict) -> Step:
    """Retry a retryable failure after a backoff while attempts and the deadline allow, or
    fail (and so refund) the run.

    Two kinds of failure are not attempts, and are bounded only by the deadline (which
    ends the run as `timeout`): a throttle before anything was created, and a failed poll
    of a job that exists. Their counts in a row live in the run's upstream state, so the
    wait grows while a provider stays busy or unreachable instead of asking again every
    second until the deadline.
    """
    if job.upstream_id is not None:
        failures = int(retries.get("failed_polls", 0)) + 1
        wait = backoff_seconds(failures, error.retry_after, cap=MAX_POLL_BACKOFF_SECONDS)
        changes = {"upstream_state": {**(job.upstream_state or {}),
                                      RETRY_STATE_KEY: {"failed_polls": failures}}}
        attempts_left = True
    else:
        throttles = int(retries.get("throttles", 0))
        wait = backoff_seconds(job.attempt + throttles, error.retry_after)
        throttled = created_nothing(error)
        changes = {"upstream_state": {RETRY_STATE_KEY: {"throttles": throttles + int(throttled)}}}
        if throttled:
            changes["attempts"] = job.attempt - 1  # hand the attempt back
        attempts_left = throttled or job.attempt < job.spec.max_attempts
    if error.retryable and attempts_left and wait < job.seconds_left():
        log.info("run %s: retrying in %.1fs after: %s", job.run_id, wait, error.message)
        kept = release(session, job.run_id, owner, check_after=wait, **changes)
        session.commit()
        return Step(check_after=wait if kept else None)
    code = "timeout" if error.retryable and wait >= job.seconds_left() else error.code
    ended = runs.mark_failed(session, job.run_id, message=error.message, code=code)
    session.commit()
    return Step(ended=ended)


def _finish(app: Flask, session: Session, run: ClaimedRun, result: Done, *, job: Job,
            owner: str, retries: dict) -> Step:
    """Store every output; the step returned carries them, for the worker to record and
    mark the run succeeded in one transaction (shared with other runs and its next claim:
    finish_group.py); never succeeded without files. Storage that fails is retried like a
    provider failure."""
    storage = state.storage(app)
    rows = []
    try:
        for output in result.outputs:
            data, content_type = _output_bytes(app, output)
            data = _with_recipe(run, data, content_type)
            rows.append(files.save_output(storage, user_id=run.user_id, run_id=run.id,
                                          data=data, content_type=content_type))
    except (ProviderError, ValueError, *storage.failures) as error:
        session.rollback()
        for row in rows:
            _delete_quietly(storage, row.name)
        if isinstance(error, storage.failures):
            # Our storage failed (disk full, bucket unreachable), not the provider: try
            # the run again after a backoff, as any retryable failure, rather than waiting
            # for the lease to expire or failing a run the provider did make.
            log.warning("run %s: could not store an output: %s", run.id, error)
            retry = ProviderError("The output could not be stored.", code="output_unavailable",
                                  retryable=True)
            return _on_provider_error(app, session, job, owner, retry, retries)
        ended = runs.mark_failed(session, run.id, code="output_unavailable",
                                 message=f"The output could not be stored: {error}")
        session.commit()
        return Step(ended=ended)
    faults.point("before_finish")
    session.rollback()  # nothing of this turn is left to write here
    # Written with other finished runs, in a shared transaction, while the thread goes
    # on to its next run.
    return Step(outputs=rows)


def _delete_quietly(storage, name: str) -> None:
    """Remove a saved output nobody will record; a storage that fails here too only
    leaves an unreferenced file behind (never served: it has no row)."""
    try:
        storage.delete(name)
    except storage.failures as error:
        log.warning("could not remove unrecorded output %s: %s", name, error)


def _with_recipe(run: ClaimedRun, data: bytes, content_type: str) -> bytes:
    """PNG outputs carry their run's recipe (recipe.py), whichever provider made them."""
    if content_type != "image/png":
        return data
    try:
        return recipe.embed_png_recipe(data, recipe.recipe_for_run(run, public_base_url()))
    except ValueError as error:
        # A PNG whose chunks we can't walk is still the provider's result: keep it as is.
        log.warning("run %s: no recipe embedded in a PNG output: %s", run.id, error)
        return data


#: Provider URLs often expire soon, and videos are large: allow a long download.
OUTPUT_FETCH_SECONDS = 300.0


def _output_bytes(app: Flask, output) -> tuple[bytes, str]:
    """An output's bytes and content type; provider URLs are downloaded through net.py."""
    if output.data is not None:
        return output.data, output.content_type
    try:
        fetched = provider_context(app).fetcher.get(output.url, timeout=OUTPUT_FETCH_SECONDS)
    except net.FetchError as error:
        raise ProviderError(f"the output URL could not be downloaded: {error.message}",
                            code="output_unavailable", retryable=error.retryable) from error
    declared = output.content_type or fetched.content_type
    sniffed = sniff_output_type(fetched.content)
    if sniffed is None:
        # An HTML error page or anything else served with a 200 is not a result.
        raise ProviderError(f"the output URL served no image or video (said {declared!r})",
                            code="output_unavailable")
    if sniffed != declared:
        log.info("output declared as %r is %s; storing it as what it is", declared, sniffed)
    return fetched.content, sniffed
