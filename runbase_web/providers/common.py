"""What every adapter shares: the `ProviderAdapter` base class, and the helpers adapters
would otherwise copy from each other.

- Credentials: the variables a model needs are its catalog `requires_env` (an upstream
  Runbase needs `catalog.UPSTREAM_ENV` instead); `ProviderAdapter.from_context` checks them
  in one place, and an unset one is `model_unavailable` (final: setting a variable needs an
  operator, not a retry).
- Polling: one function (`poll_delay`) decides the wait before the next look at an upstream
  job, from the adapter's `POLL_SCHEDULE` and the run's deadline; `ProviderAdapter.pending`
  counts the looks in the job's state. A job whose provider was asked to call back is
  looked at only every `callback_poll_seconds` (a fallback for callbacks that never come).
- Callbacks: an adapter whose provider signs callbacks sets `CALLBACKS`, asks for one in
  `start` when it has a `callback_url`, checks their signatures in `verify_callback` and
  reads their bodies in `called_back`.
- Inputs and outputs: the catalog's `input_map` renames (pass-through adapters), reference
  images read (this server's own files, from storage) or fetched for the providers that
  take bytes, output URLs turned into `Output`s, and
  outputs on the provider's own API origin downloaded through its client.

Adapters import from here, `base`, `http` and `media`, never from another adapter.
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import replace
from typing import Any, Callable, Iterator, Mapping, Sequence
from urllib.parse import unquote_to_bytes, urlsplit

from .. import jsontext, net
from ..catalog import ModelSpec
from ..webhook_signatures import SignatureError
from .base import Callback, Done, Job, Output, Pending, ProviderContext, ProviderError
from .http import ProviderClient
from .media import (WEB_IMAGE_TYPES, data_uri, fetch_reference_images, own_file,
                    sniff_image_type, sniff_output_type)

#: Seconds before each look at an upstream job: quick at first (images take seconds), then
#: every few seconds; the last step repeats. Adapters whose jobs take longer set their own.
POLL_SCHEDULE = (1.0, 1.0, 2.0, 2.0, 3.0, 5.0)
#: Seconds between looks at a job whose provider will call back: only a fallback, for a
#: callback lost on the way (RUNBASE_CALLBACK_POLL_SECONDS sets it per server).
CALLBACK_POLL_SECONDS = 60.0
#: Key in a job's state: the provider was asked to call back when the job ends.
CALLBACK_STATE_KEY = "callback"
#: The shortest wait before a look, even when the deadline is (almost) reached.
MIN_POLL_SECONDS = 0.05
#: A cancel is a small call: at least this long, however close the deadline, ...
MIN_CANCEL_SECONDS = 5.0
#: ... and never longer than this (the worker retries a cancel that failed).
MAX_CANCEL_SECONDS = 10.0
#: Per reference image; the run's deadline bounds it further.
REFERENCE_FETCH_SECONDS = 30.0
#: Provider URLs often expire soon, and videos are large: allow a long download.
OUTPUT_FETCH_SECONDS = 300.0
#: Types we can store, by file extension of a provider URL.
TYPES_BY_EXTENSION = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
                      ".webp": "image/webp", ".mp4": "video/mp4", ".webm": "video/webm"}


# --- credentials ---------------------------------------------------------------------------


def credentials(spec: ModelSpec, required: Sequence[str], env: Mapping[str, str],
                wanted: Mapping[str, str]) -> dict[str, str]:
    """The client's credential arguments (`wanted`: argument → variable) from `env`.

    Every `required` variable must be set, and the adapter may read only those: a variable
    it wants that the model's catalog entry does not list is a catalog mistake. Both are
    `model_unavailable` and final, as only the operator can fix them.
    """
    missing = [name for name in required if not env.get(name)]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise ProviderError(f"{' and '.join(missing)} {verb} not set on this server.",
                            code="model_unavailable")
    unlisted = [name for name in wanted.values() if name not in required]
    if unlisted:
        raise ProviderError(f"Model {spec.id} needs {' and '.join(unlisted)}, which its catalog "
                            "entry does not list in requires_env.", code="model_unavailable")
    return {argument: env[name] for argument, name in wanted.items()}


# --- polling -------------------------------------------------------------------------------


def poll_delay(job: Job, polls: int, schedule: Sequence[float] = POLL_SCHEDULE) -> float:
    """Seconds before the next look at an upstream job after `polls` looks (0 right after
    the submit): the schedule's step, its last step repeating, never past the run's deadline
    (so the worker notices an expired deadline promptly and cancels upstream)."""
    step = schedule[min(polls, len(schedule) - 1)]
    return max(min(step, job.seconds_left()), MIN_POLL_SECONDS)


def polls_so_far(job: Job) -> int:
    """How many times the upstream job was looked at, as counted in its state."""
    return int((job.upstream_state or {}).get("polls", 0))


def cancel_seconds(job: Job) -> float:
    """The timeout of a cancel call: the time left, within MIN/MAX_CANCEL_SECONDS (a run
    past its deadline still gets its upstream job stopped)."""
    return min(max(job.seconds_left(), MIN_CANCEL_SECONDS), MAX_CANCEL_SECONDS)


def job_failed(what: str, detail: object, refusal_words: Sequence[str]) -> ProviderError:
    """A final error for a job that ended failed: `content_rejected` when its message has
    one of `refusal_words` (the provider's safety filter said no), else `provider_error`."""
    message = str(detail or "no details")[:500]
    lowered = message.lower()
    code = "content_rejected" if any(word in lowered for word in refusal_words) else "provider_error"
    return ProviderError(f"{what} failed: {message}", code=code)


def unknown_status(provider: str, kind: str, status: object) -> ProviderError:
    """A job status we do not know: retryable, as the provider's next answer may make sense
    (and the deadline bounds the asking)."""
    return ProviderError(f"{provider} sent an unknown {kind} status {status!r}.",
                         code="provider_bad_response", retryable=True)


def callback_json(body: bytes) -> dict:
    """A signed callback's body as a JSON object we can store (strict JSON: no NaN, no lone
    surrogates, bounded nesting); anything else is refused with a 400."""
    try:
        value = jsontext.loads_strict(body)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise SignatureError("The callback's body is not an acceptable JSON object.",
                             code="bad_body", status=400)
    return value


# --- inputs --------------------------------------------------------------------------------


def apply_input_map(job: Job) -> dict:
    """The run's input with the catalog's `input_map` renames applied; a target ending in
    `[0]` takes only the first item of a list (for models that want one image)."""
    data = dict(job.input)
    for source, target in job.spec.input_map.items():
        if source not in data:
            continue
        value = data.pop(source)
        if target.endswith("[0]"):
            target = target[:-3]
            if isinstance(value, list):
                if not value:
                    continue
                value = value[0]
        data[target] = value
    return data


# --- outputs -------------------------------------------------------------------------------


def sniff_type(url: str) -> str | None:
    """The content type a URL's extension suggests, or None (the fetched type decides)."""
    path = urlsplit(url).path.lower()
    for extension, content_type in TYPES_BY_EXTENSION.items():
        if path.endswith(extension):
            return content_type
    return None


def url_output(url: str, content_type: str | None = None) -> Output:
    """One output: `data:` URIs are decoded here, other URLs are left for the worker (or
    `ProviderAdapter.done`) to download."""
    if url.startswith("data:"):
        return _data_uri_output(url)
    return Output(content_type or sniff_type(url), url=url)


def _data_uri_output(uri: str) -> Output:
    """A `data:` URI output as bytes; a broken one is the provider's bad answer."""
    header, _, payload = uri.partition(",")
    content_type = header[5:].split(";")[0] or None
    try:
        data = (base64.b64decode(payload, validate=True) if header.endswith(";base64")
                else unquote_to_bytes(payload))
    except (binascii.Error, ValueError):
        raise ProviderError("The provider sent an unreadable data: URI.",
                            code="provider_bad_response") from None
    return Output(content_type, data=data)


def find_urls(value: Any) -> Iterator[str]:
    """Every http(s) or data: URL in a model's output, however nested (a string, a list,
    or objects such as `{"image": "https://…"}`), in document order."""
    if isinstance(value, str):
        if value.startswith(("https://", "http://", "data:")):
            yield value
    elif isinstance(value, list):
        for item in value:
            yield from find_urls(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from find_urls(item)


def own_origin_outputs(client: ProviderClient, fetcher, outputs: list[Output], job: Job, *,
                       retryable: bool = True) -> Done:
    """`outputs` with every URL on the provider's API origin downloaded now, through its
    client and with its credentials; other URLs are left for the worker's guarded fetcher.

    The operator chose the API origin, and may have pointed it at a compatible server on a
    private address that the SSRF guard rightly refuses for URLs from anywhere else; its files
    must not fail after the provider has been paid. Pass `retryable=False` from a synchronous
    `start`, where retrying would pay for the generation again.
    """
    return Done([_own_origin_output(client, fetcher, output, job, retryable)
                 for output in outputs])


def _own_origin_output(client: ProviderClient, fetcher, output: Output, job: Job,
                       retryable: bool) -> Output:
    """One output, downloaded now when its URL is on the client's API origin."""
    if output.url is None or not client.owns(output.url):
        return output
    try:
        data = client.download(output.url, fetcher=fetcher,
                               max_bytes=getattr(fetcher, "max_bytes", net.DEFAULT_MAX_BYTES),
                               timeout=min(OUTPUT_FETCH_SECONDS, max(job.seconds_left(), 1.0)))
    except ProviderError as error:
        if error.retryable and not retryable:
            raise ProviderError(error.message, code=error.code) from None
        raise
    media_type = sniff_output_type(data)
    if media_type is None:
        # An HTML error page or anything else served with a 200 is not a result.
        raise ProviderError(f"The output from {client.name} is no image or video.",
                            code="output_unavailable")
    return Output(media_type, data=data)


# --- the base class ------------------------------------------------------------------------


class ProviderAdapter:
    """Base of every adapter: built from the provider variables, a client and the fetcher.

    A subclass names its client class (`CLIENT`) and which variable feeds which client
    argument (`CREDENTIALS`), and implements `start`; an async one also `poll` (answering
    with `self.pending(...)` while the job runs) and, where the provider has one, `cancel`.
    The defaults suit a synchronous provider without a cancel call.
    """

    #: The HTTP client class (None: the adapter needs no network, like the local models).
    CLIENT: type[ProviderClient] | None = None
    #: Client constructor argument → the variable holding it (each must be in requires_env).
    CREDENTIALS: Mapping[str, str] = {}
    #: Seconds before each look at an upstream job (see poll_delay).
    POLL_SCHEDULE: tuple[float, ...] = POLL_SCHEDULE
    #: An upstream job's statuses while it runs, and the one it ends with outputs in (see
    #: `outcome`).
    RUNNING: frozenset[str] = frozenset()
    SUCCEEDED = "succeeded"
    #: Reference images: the largest file taken, and the types sent as they are (others are
    #: converted to PNG; see media.py).
    REFERENCE_MAX_BYTES = 10 * 1024 * 1024
    REFERENCE_TYPES: frozenset[str] = WEB_IMAGE_TYPES
    #: The provider can be asked to call back when a job ends, and signs its callbacks.
    CALLBACKS = False

    def __init__(self, client: ProviderClient | None = None, fetcher=None, *,
                 callback_url: str | None = None,
                 callback_poll_seconds: float = CALLBACK_POLL_SECONDS,
                 read_own_file: Callable[[str], bytes | None] | None = None):
        self.client = client
        self.fetcher = fetcher
        #: Reads this server's own files by URL from storage (see reference_images).
        self.read_own_file = read_own_file
        #: Where `start` asks the provider to call back (None: poll only).
        self.callback_url = callback_url if self.CALLBACKS else None
        self.callback_poll_seconds = callback_poll_seconds

    @classmethod
    def from_context(cls, spec: ModelSpec, context: ProviderContext) -> "ProviderAdapter":
        """The adapter for `spec` with a client from the provider variables; unset
        credentials are `model_unavailable` (see credentials)."""
        arguments = credentials(spec, cls.required_env(spec), context.env, cls.CREDENTIALS)
        client = cls.CLIENT.configured(context.env, **arguments) if cls.CLIENT else None
        return cls(client, context.fetcher, callback_url=context.callback_url,
                   callback_poll_seconds=context.callback_poll_seconds or CALLBACK_POLL_SECONDS,
                   read_own_file=context.read_own_file)

    @classmethod
    def required_env(cls, spec: ModelSpec) -> tuple[str, ...]:
        """The variables a run of `spec` needs on this adapter: its catalog `requires_env`."""
        return spec.requires_env

    def start(self, job: Job) -> Done | Pending:
        """Send the run to the provider: its outputs (`Done`) or its job id (`Pending`)."""
        raise NotImplementedError

    def poll(self, job: Job) -> Done | Pending:
        """Look at the upstream job again. Never called for synchronous providers, whose
        `start` leaves no job behind."""
        raise ProviderError(f"{type(self).__name__} runs have no upstream job to poll.",
                            code="provider_error")

    def cancel(self, job: Job) -> None:
        """Ask the provider to stop the upstream job; by default there is nothing to call
        (no job id, or no cancel endpoint), so the job runs to its end."""

    def pending(self, job: Job, upstream_id: str, state: dict | None = None) -> Pending:
        """The job is still running: look again after the next step of POLL_SCHEDULE, or,
        when the provider was asked to call back, after `callback_poll_seconds`. The looks
        so far are counted in the job's state (0 when `start` submitted it), next to
        whatever else the adapter keeps there."""
        polls = 0 if job.upstream_id is None else polls_so_far(job) + 1
        state = {**(state or {}), "polls": polls}
        if self.asked_for_callback(job):
            # Kept in the job's state: whether this job's provider will call back was decided
            # at submit, whatever this server's settings say by the time of a later look.
            state[CALLBACK_STATE_KEY] = True
            return Pending(upstream_id, poll_delay(job, 0, (self.callback_poll_seconds,)), state)
        return Pending(upstream_id, poll_delay(job, polls, self.POLL_SCHEDULE), state)

    def asked_for_callback(self, job: Job) -> bool:
        """True if the provider will call back when this job ends: `start` (no upstream id
        yet) asks whenever the adapter has a callback URL, and the job's state remembers."""
        if job.upstream_id is None:
            return self.callback_url is not None
        return bool((job.upstream_state or {}).get(CALLBACK_STATE_KEY))

    # --- callbacks ---------------------------------------------------------------------------

    @classmethod
    def callbacks_available(cls, env: Mapping[str, str]) -> bool:
        """True if callbacks can be asked for and checked with these provider variables (an
        upstream Runbase needs its webhook secret; the others need nothing more)."""
        return cls.CALLBACKS

    @classmethod
    def verify_callback(cls, env: Mapping[str, str], headers: Mapping[str, str], body: bytes,
                        now: float) -> Callback:
        """Check a callback's signature as the provider documents it (`headers` with
        lower-case names, `body` the raw bytes, `now` a Unix time); raises SignatureError
        for anything unsigned, stale or forged."""
        raise SignatureError(f"{cls.__name__} providers do not call back.", code="not_found",
                             status=404)

    def called_back(self, job: Job, body: dict) -> Done | None:
        """What a verified callback says of the job, read like a poll's answer: Done, or a
        final ProviderError; None when it says nothing usable (another job, still running, a
        result left out), so the worker polls instead."""
        return None

    def read(self, job: Job, path: str, **kwargs: Any) -> dict:
        """GET `path` (an upstream job) within the run's time, as a JSON object."""
        response = self.client.request("GET", path, seconds_left=job.seconds_left(), **kwargs)
        return self.client.json_object(response)

    def outcome(self, job: Job, upstream_id: str, status: object, *,
                outputs: Callable[[], list[Output]], failure: Callable[[], ProviderError],
                state: dict | None = None) -> Done | Pending:
        """What an upstream job's `status` means: still running (one of RUNNING: look again
        later, keeping `state`), finished (SUCCEEDED: Done with `outputs()`), or anything
        else, which `failure()` explains (a final failure, or an unknown status)."""
        if status in self.RUNNING:
            return self.pending(job, upstream_id, state)
        if status == self.SUCCEEDED:
            return self.done(job, outputs())
        raise failure()

    def done(self, job: Job, outputs: list[Output], *, retryable: bool = True) -> Done:
        """The provider finished with `outputs`; those on its API origin are downloaded now
        (see own_origin_outputs; `retryable=False` from a synchronous `start`)."""
        return own_origin_outputs(self.client, self.fetcher, outputs, job, retryable=retryable)

    def with_own_files(self, job: Job, convert: Callable[[bytes, str, int], str]) -> Job:
        """The job with each of this server's own files in `image_urls` replaced by
        `convert(bytes, media type, index)`, for providers that fetch the URLs themselves:
        an upload is served only to its owner, and a server without a public address cannot
        be reached by them at all. Other URLs are left for the provider to fetch."""
        urls = job.input.get("image_urls")
        if not isinstance(urls, list) or self.read_own_file is None:
            return job
        changed = []
        for index, url in enumerate(urls, start=1):
            data = own_file(self.read_own_file, url, index) if isinstance(url, str) else None
            changed.append(url if data is None else
                           convert(data, sniff_image_type(data) or "application/octet-stream",
                                   index))
        return replace(job, input={**job.input, "image_urls": changed})

    def own_files_inline(self, job: Job) -> Job:
        """with_own_files as `data:` URIs, which Replicate and fal take wherever a file URL
        goes."""
        return self.with_own_files(job, lambda data, media_type, _index: data_uri(data, media_type))

    def reference_images(self, job: Job) -> list[tuple[bytes, str]]:
        """The run's `image_urls` checked, as (bytes, media type) within REFERENCE_MAX_BYTES
        and REFERENCE_TYPES, for providers that take images as bytes (so they never get a
        URL we have not vetted): this server's own files read from storage, any other URL
        downloaded through the guarded fetcher."""
        return fetch_reference_images(
            self.fetcher, job.input.get("image_urls") or [], max_bytes=self.REFERENCE_MAX_BYTES,
            timeout=min(REFERENCE_FETCH_SECONDS, max(job.seconds_left(), 1.0)),
            accepted=self.REFERENCE_TYPES, read_own=self.read_own_file)
