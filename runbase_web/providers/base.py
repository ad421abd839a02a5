"""What an adapter sees of a run, and what it hands back to the worker.

An adapter either finishes in one call (`Done`), or submits a job and returns
`Pending` with the provider's id; the worker commits that id before anything
else and calls `poll` later, from any worker process, so no thread waits.
A provider that can call back when a job ends is asked to (when this server has a public
URL), and its signed callback is handed to `called_back` instead of the next poll.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Mapping, Protocol

from ..catalog import ModelSpec


@dataclass(frozen=True)
class Job:
    """The parts of a run an adapter needs; adapters never see the database."""

    run_id: str
    spec: ModelSpec
    input: dict
    deadline_at: datetime
    attempt: int
    upstream_id: str | None = None
    upstream_state: dict | None = None

    def seconds_left(self) -> float:
        """Time until the run's deadline; adapters use it to bound their HTTP timeouts."""
        return (self.deadline_at - datetime.now(timezone.utc)).total_seconds()


@dataclass(frozen=True)
class Output:
    """One produced file: bytes, or a provider URL the worker downloads through net.py."""

    content_type: str
    data: bytes | None = None
    url: str | None = None


@dataclass(frozen=True)
class Done:
    """The provider finished; these are the outputs."""

    outputs: list[Output]


@dataclass(frozen=True)
class Pending:
    """The provider is still working; look again after `check_after` seconds."""

    upstream_id: str
    check_after: float
    state: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Callback:
    """A provider's callback whose signature checked out (see `ProviderAdapter.verify_callback`).

    `message_id` names this message (the same on the sender's retries of it), `upstream_id`
    the provider job it is about, and `body` is what the provider said of that job; the
    worker reads it through the adapter's `called_back`, as if a poll had answered it.
    """

    message_id: str
    upstream_id: str
    body: dict


class ProviderError(Exception):
    """A provider call that did not produce outputs.

    `retryable` errors (timeouts, resets, 429, 5xx) are tried again with backoff;
    the others (validation, content policy, auth) fail the run at once.
    """

    def __init__(self, message: str, *, code: str = "provider_error", retryable: bool = False,
                 retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True)
class ProviderContext:
    """What every adapter is built from: the provider variables, the guarded fetcher (for
    reference images and output URLs; see runbase_web/net.py), and the adapter to build.

    `adapter` is the adapter name a run started with (Run.adapter), so a run keeps talking to
    the provider that holds its job even if the variables change mid-run; None routes by the
    variables (catalog.effective_adapter), for a run's first call and rows from before the
    column.
    """

    env: Mapping[str, str]
    fetcher: object = None
    adapter: str | None = None
    #: Where the provider should call back when the run's job ends (services/callbacks.py),
    #: or None to poll only: no RUNBASE_PUBLIC_URL, or a provider that cannot call back.
    callback_url: str | None = None
    #: Seconds between looks at a job whose provider was asked to call back (a fallback).
    callback_poll_seconds: float | None = None
    #: Reads this server's own files (uploads and outputs) by URL from storage: their
    #: bytes, or None for any other URL (see media.fetch_reference_images). None: no reader.
    read_own_file: Callable[[str], bytes | None] | None = None


class Adapter(Protocol):
    """One provider's translation of runs into its wire format."""

    def start(self, job: Job) -> Done | Pending: ...
    def poll(self, job: Job) -> Done | Pending: ...
    def cancel(self, job: Job) -> None: ...
    def called_back(self, job: Job, body: dict) -> Done | None: ...
