"""An upstream hosted Runbase as a provider (its wire format is this server's own API).

A public model whose own provider has no credentials here is sent to the upstream when
RUNBASE_UPSTREAM_URL and RUNBASE_UPSTREAM_KEY are set (routing: catalog.
effective_adapter). Every create carries `Idempotency-Key: <our run id>`, so when our create
times out after the upstream accepted it, the retry gets the same upstream run back instead
of a second one (and a second charge on the operator's upstream account).

Callbacks: with a callback URL, the create carries `"webhook": <url>`; the upstream POSTs
the run object when the run ends, signed per Standard Webhooks with the webhook secret of
the upstream account (its Settings → Webhooks page), which the operator sets here as
RUNBASE_UPSTREAM_WEBHOOK_SECRET. Without it no callback is asked for: polling only.
"""
from __future__ import annotations

import re
from typing import Mapping
from urllib.parse import urljoin

from ..catalog import UPSTREAM_ADAPTER, UPSTREAM_ENV, ModelSpec
from ..webhook_signatures import SignatureError, verify_standard
from .base import Callback, Done, Job, Output, Pending, ProviderError
from .common import ProviderAdapter, callback_json, cancel_seconds, unknown_status, url_output
from .http import KeyedClient, parse_retry_after

#: Creating a run upstream only validates, charges and queues it: a long wait means trouble,
#: and the Idempotency-Key makes asking again safe.
CREATE_TIMEOUT = 15.0
#: The upstream account's webhook signing secret (`whsec_...`): callbacks are asked for only
#: when it is set, as nothing else could check them.
WEBHOOK_SECRET_ENV = "RUNBASE_UPSTREAM_WEBHOOK_SECRET"
ERROR_CODE_RE = re.compile(r"^[a-z][a-z0-9_]{0,48}$")
#: Upstream error code → (message for our run, our code, retryable). Several are the
#: operator's business (balance, limits, key), so the message says what they must fix.
UPSTREAM_ERRORS = {
    "insufficient_balance": ("The upstream Runbase account has too little balance for this run; "
                             "the operator of this server must top it up.", "provider_error", False),
    "api_key_spend_limit_exceeded": ("RUNBASE_UPSTREAM_KEY reached its spend limit on the upstream "
                                     "Runbase; the operator must raise it.", "provider_error", False),
    "USAGE_EXCEEDED": ("RUNBASE_UPSTREAM_KEY's usage quota on the upstream Runbase is exhausted.",
                       "provider_error", False),
    "ip_not_allowed": ("The upstream Runbase refused this server's IP address for "
                       "RUNBASE_UPSTREAM_KEY.", "provider_auth", False),
    "missing_api_key": ("The upstream Runbase did not accept RUNBASE_UPSTREAM_KEY.",
                        "provider_auth", False),
    "invalid_api_key": ("The upstream Runbase did not accept RUNBASE_UPSTREAM_KEY.",
                        "provider_auth", False),
    "model_not_found": ("The upstream Runbase does not offer this model.", "provider_error", False),
    "invalid_input": ("The upstream Runbase rejected the input.", "invalid_input", False),
    "run_not_found": ("The upstream Runbase no longer knows this run.", "provider_error", False),
    "RATE_LIMITED": ("The upstream Runbase is rate limiting RUNBASE_UPSTREAM_KEY.",
                     "provider_busy", True),
    # Our first create with this key is still being answered upstream: ask again shortly.
    "idempotency_key_in_use": ("The upstream Runbase is still creating this run.",
                               "provider_busy", True),
    "idempotency_key_reused": ("The upstream Runbase saw this run's Idempotency-Key with a "
                               "different body.", "provider_error", False),
}


class UpstreamClient(KeyedClient):
    """HTTP client for a hosted Runbase: Bearer sk- key, `{"error": {message, code}}`."""

    name = "the upstream Runbase"
    #: The server root (e.g. https://runbase.net), required (catalog.UPSTREAM_ENV); a trailing
    #: /api/v1 is accepted too. Requests go to paths under the API version.
    base_url_env = "RUNBASE_UPSTREAM_URL"
    api_version = "/api/v1"

    def error_for(self, response) -> ProviderError:
        """Runbase's own codes first (see UPSTREAM_ERRORS), then the generic rules."""
        detail, code = self.describe_error(response)
        known = UPSTREAM_ERRORS.get(code or "")
        if known is None:
            return super().error_for(response)
        message, our_code, retryable = known
        retry_after = parse_retry_after(response.headers) if retryable else None
        if retryable and retry_after is None:
            retry_after = 1.0 if code == "idempotency_key_in_use" else None
        return ProviderError(f"{message} (upstream {response.status_code} {code}: {detail})",
                             code=our_code, retryable=retryable, retry_after=retry_after)


class UpstreamRunbaseAdapter(ProviderAdapter):
    """Runs a catalog model on an upstream hosted Runbase: create, poll, cancel."""

    CLIENT = UpstreamClient
    CREDENTIALS = {"api_key": "RUNBASE_UPSTREAM_KEY"}
    RUNNING = frozenset({"pending", "processing"})
    CALLBACKS = True

    @classmethod
    def required_env(cls, spec: ModelSpec) -> tuple[str, ...]:
        """The upstream variables, whatever the model's own provider needs."""
        return UPSTREAM_ENV

    def start(self, job: Job) -> Done | Pending:
        """Create the upstream run, idempotently keyed by our run id (the callback URL is the
        same on every try of one run, so a retried create has the same body)."""
        job = self.with_own_files(job, self._upload)
        body = {"model": upstream_model(job.spec), "input": job.input}
        if self.callback_url:
            body["webhook"] = self.callback_url
        response = self.client.request(
            "POST", "/runs", seconds_left=min(job.seconds_left(), CREATE_TIMEOUT),
            json=body, headers={"Idempotency-Key": job.run_id})
        return self._interpret(job, self.client.json_object(response))

    def _upload(self, data: bytes, media_type: str, index: int) -> str:
        """One of this server's files uploaded to the upstream account (`POST /files`):
        the URL its runs may use, as our own uploads are to ours."""
        extension = media_type.rpartition("/")[2] or "bin"
        response = self.client.request(
            "POST", "/files", seconds_left=CREATE_TIMEOUT,
            files={"file": (f"reference-{index}.{extension}", data, media_type)})
        url = self.client.json_object(response).get("url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise ProviderError("The upstream answered an upload without a file URL.",
                                code="provider_bad_response", retryable=True)
        return url

    def poll(self, job: Job) -> Done | Pending:
        """Read the upstream run again."""
        return self._interpret(job, self.read(job, f"/runs/{job.upstream_id}"))

    def cancel(self, job: Job) -> None:
        """Cancel upstream (a Runbase extension; a server without it answers 404/405)."""
        try:
            self.client.request("POST", f"/runs/{job.upstream_id}/cancel",
                                seconds_left=cancel_seconds(job))
        except ProviderError as error:
            if error.retryable or error.code == "provider_auth":
                raise  # nothing to do about a 404/405: the upstream has no cancel

    @classmethod
    def callbacks_available(cls, env: Mapping[str, str]) -> bool:
        """Only with the upstream account's webhook secret, which checks its callbacks."""
        return bool(env.get(WEBHOOK_SECRET_ENV))

    @classmethod
    def verify_callback(cls, env: Mapping[str, str], headers: Mapping[str, str], body: bytes,
                        now: float) -> Callback:
        """A Standard Webhooks signature with RUNBASE_UPSTREAM_WEBHOOK_SECRET; the body is
        the upstream's run object."""
        message_id = verify_standard(env.get(WEBHOOK_SECRET_ENV, ""), headers, body, now=now)
        run = callback_json(body)
        if not isinstance(run.get("id"), str) or not run["id"]:
            raise SignatureError("The callback holds no run id.", code="bad_body", status=400)
        return Callback(message_id, run["id"], run)

    def called_back(self, job: Job, body: dict) -> Done | None:
        """The upstream run in the callback, read like a poll's answer (another run, or one
        still running, is left to a poll)."""
        if body.get("id") != job.upstream_id or body.get("status") in self.RUNNING:
            return None
        return self._interpret(job, body)

    def _interpret(self, job: Job, run: dict) -> Done | Pending:
        """Map the upstream run's status onto Done, Pending or a final ProviderError; an
        answer without a run id is a broken one."""
        if not run.get("id"):
            raise ProviderError("The upstream Runbase answered without a run id.",
                                code="provider_bad_response", retryable=True)
        return self.outcome(job, str(run["id"]), run.get("status"),
                            outputs=lambda: self._outputs(run), failure=lambda: _failure(run))

    def _outputs(self, run: dict) -> list[Output]:
        """`output.urls` (also `output.url`, which some clients expect) → Outputs; relative
        URLs are resolved against the upstream server's root (the base URL without /api/v1)."""
        output = run.get("output") if isinstance(run.get("output"), dict) else {}
        urls = output.get("urls") or ([output["url"]] if output.get("url") else [])
        root = self.client.base_url.rsplit("/", 2)[0] + "/"
        urls = [urljoin(root, u) for u in urls if isinstance(u, str) and u]
        if not urls:
            raise ProviderError("The upstream run succeeded but listed no output file.",
                                code="provider_bad_response")
        return [url_output(url) for url in urls]


def _failure(run: dict) -> ProviderError:
    """Why the upstream run ended without outputs: failed, with its own errorCode passed
    through (when it looks like one), or a status we do not know (retryable: look again)."""
    status = run.get("status")
    if status != "failed":
        return unknown_status("The upstream Runbase", "run", status)
    code = run.get("errorCode")
    code = code if isinstance(code, str) and ERROR_CODE_RE.match(code) else "provider_error"
    return ProviderError(f"The upstream run failed: {str(run.get('error') or 'no details')[:500]}",
                         code=code)


def upstream_model(spec: ModelSpec) -> str:
    """The model id asked of the upstream: ours, unless an entry forced upstream
    (`"adapter": "runbase"`) names another Runbase id in `upstream`."""
    if spec.adapter == UPSTREAM_ADAPTER and "/" in spec.upstream:
        return spec.upstream
    return spec.id
