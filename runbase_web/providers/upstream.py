"""An upstream hosted Runbase as a provider (API.md is its wire format).

A public model whose own provider has no credentials here is sent to the upstream when
RUNBASE_UPSTREAM_URL and RUNBASE_UPSTREAM_KEY are set (routing: catalog.
effective_adapter). Every create carries `Idempotency-Key: <our run id>`, so when our create
times out after the upstream accepted it, the retry gets the same upstream run back instead
of a second one (and a second charge on the operator's upstream account).
"""
from __future__ import annotations

import re
from typing import Any
from urllib.parse import urljoin

from .base import Done, Job, Pending, ProviderError
from .http import ProviderClient, configured_base_url, parse_retry_after
from .replicate import own_origin_outputs, poll_delay, url_output

#: Creating a run upstream only validates, charges and queues it: a long wait means trouble,
#: and the Idempotency-Key makes asking again safe.
CREATE_TIMEOUT = 15.0
#: RUNBASE_UPSTREAM_URL is the server root (e.g. https://runbase.net); a trailing /api/v1
#: is accepted too. Requests go to paths under the API version.
API_VERSION = "/api/v1"
RUNNING = frozenset({"pending", "processing"})
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


class UpstreamClient(ProviderClient):
    """HTTP client for a hosted Runbase: Bearer sk- key, `{"error": {message, code}}`."""

    name = "the upstream Runbase"

    def __init__(self, *, key: str, **kwargs: Any):
        super().__init__(**kwargs)
        self._key = key

    def auth_headers(self) -> dict[str, str]:
        """`Authorization: Bearer sk-…` on every request."""
        return {"Authorization": f"Bearer {self._key}"}

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


class UpstreamRunbaseAdapter:
    """Runs a catalog model on an upstream hosted Runbase: create, poll, cancel."""

    def __init__(self, client: UpstreamClient, model: str, fetcher=None):
        self.client = client
        self.model = model
        self.fetcher = fetcher

    @classmethod
    def from_context(cls, spec, context) -> "UpstreamRunbaseAdapter":
        """Built from RUNBASE_UPSTREAM_URL and RUNBASE_UPSTREAM_KEY (both required)."""
        url, key = context.env.get("RUNBASE_UPSTREAM_URL"), context.env.get("RUNBASE_UPSTREAM_KEY")
        if not url or not key:
            raise ProviderError("RUNBASE_UPSTREAM_URL and RUNBASE_UPSTREAM_KEY must both be set.",
                                code="provider_auth")
        base_url = configured_base_url(context.env, "RUNBASE_UPSTREAM_URL", url, API_VERSION)
        return cls(UpstreamClient(key=key, base_url=base_url), upstream_model(spec),
                   context.fetcher)

    def start(self, job: Job) -> Done | Pending:
        """Create the upstream run, idempotently keyed by our run id."""
        response = self.client.request(
            "POST", "/runs", seconds_left=min(job.seconds_left(), CREATE_TIMEOUT),
            json={"model": self.model, "input": job.input},
            headers={"Idempotency-Key": job.run_id})
        return self._interpret(job, self._run(response), polls=0)

    def poll(self, job: Job) -> Done | Pending:
        """Read the upstream run again."""
        response = self.client.request("GET", f"/runs/{job.upstream_id}",
                                       seconds_left=job.seconds_left())
        polls = int((job.upstream_state or {}).get("polls", 0)) + 1
        return self._interpret(job, self._run(response), polls=polls)

    def cancel(self, job: Job) -> None:
        """Cancel upstream (a Runbase extension; a server without it answers 404/405)."""
        try:
            self.client.request("POST", f"/runs/{job.upstream_id}/cancel",
                                seconds_left=min(max(job.seconds_left(), 5.0), 10.0))
        except ProviderError as error:
            if error.retryable or error.code == "provider_auth":
                raise  # nothing to do about a 404/405: the upstream has no cancel

    def _run(self, response) -> dict:
        run = self.client.json(response)
        if not isinstance(run, dict) or not run.get("id"):
            raise ProviderError("The upstream Runbase answered without a run id.",
                                code="provider_bad_response", retryable=True)
        return run

    def _interpret(self, job: Job, run: dict, *, polls: int) -> Done | Pending:
        """Map the upstream run's status onto Done, Pending or a final ProviderError."""
        status = run.get("status")
        if status in RUNNING:
            return Pending(str(run["id"]), poll_delay(job, polls), {"polls": polls})
        if status == "succeeded":
            return own_origin_outputs(self.client, self.fetcher, self._outputs(run), job)
        if status == "failed":
            code = run.get("errorCode")
            code = code if isinstance(code, str) and ERROR_CODE_RE.match(code) else "provider_error"
            raise ProviderError(f"The upstream run failed: {str(run.get('error') or 'no details')[:500]}",
                                code=code)
        raise ProviderError(f"The upstream Runbase sent an unknown run status {status!r}.",
                            code="provider_bad_response", retryable=True)

    def _outputs(self, run: dict) -> Done:
        """`output.urls` (also `output.url`, which some clients expect) → Outputs; relative
        URLs are resolved against the upstream server's root (the base URL without /api/v1)."""
        output = run.get("output") if isinstance(run.get("output"), dict) else {}
        urls = output.get("urls") or ([output["url"]] if output.get("url") else [])
        root = self.client.base_url.rsplit("/", 2)[0] + "/"
        urls = [urljoin(root, u) for u in urls if isinstance(u, str) and u]
        if not urls:
            raise ProviderError("The upstream run succeeded but listed no output file.",
                                code="provider_bad_response")
        return Done([url_output(url) for url in urls])


def upstream_model(spec) -> str:
    """The model id asked of the upstream: ours, unless an entry forced upstream
    (`"adapter": "runbase"`) names another Runbase id in `upstream`."""
    if spec.adapter == "runbase" and "/" in spec.upstream:
        return spec.upstream
    return spec.id
