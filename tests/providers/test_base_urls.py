"""Every provider base-URL variable works with and without its API version path (the form
the provider's own SDK documents may be either), against each fake over real HTTP; and an
output on the configured API origin is fetched although the guard refuses loopback URLs."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from runbase_web import net
from runbase_web.providers.base import Done, Job, Pending
from runbase_web.providers.http import configured_base_url
from runbase_web.providers.registry import ProviderContext, adapter_for
from runbase_web.catalog import Catalog, validate_input
from tests.fakes import ark, fal, gemini, kling, minimax, openai, replicate, runbase
from tests.providers.support import PAINTER, start_fake, stop_soon, write_catalog

FAL_MODEL = {**PAINTER, "id": "fal/fal-ai/flux/dev", "adapter": "fal", "upstream": "fal-ai/flux/dev",
             "requires_env": ["FAL_KEY"], "input_map": {}}

#: provider → (fake app, model id, credentials, base-URL variable, its API version path).
PROVIDERS = {
    "openai": (openai.make_app, "openai/gpt-image-1", {"OPENAI_API_KEY": "sk-test"},
               "OPENAI_BASE_URL", "/v1"),
    "gemini": (gemini.make_app, "google/nano-banana", {"GEMINI_API_KEY": "gm-test"},
               "GEMINI_BASE_URL", "/v1beta"),
    "ark": (ark.make_app, "bytedance/seedream-4.5", {"ARK_API_KEY": ark.KEY},
            "ARK_BASE_URL", "/api/v3"),
    "kling": (kling.make_app, "kling/kling-3.0",
              {"KLING_ACCESS_KEY": kling.ACCESS_KEY, "KLING_SECRET_KEY": kling.SECRET_KEY},
              "KLING_BASE_URL", "/v1"),
    "minimax": (minimax.make_app, "hailuo/pro", {"MINIMAX_API_KEY": minimax.KEY},
                "MINIMAX_BASE_URL", "/v1"),
    "replicate": (replicate.make_app, PAINTER["id"], {"REPLICATE_API_TOKEN": "r8-test"},
                  "REPLICATE_BASE_URL", "/v1"),
    "fal": (fal.make_app, FAL_MODEL["id"], {"FAL_KEY": "fal-test"}, "FAL_QUEUE_URL", ""),
    "upstream": (runbase.make_app, "openai/gpt-image-2", {"RUNBASE_UPSTREAM_KEY": "sk-upstream-test"},
                 "RUNBASE_UPSTREAM_URL", "/api/v1"),
}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    """The packaged catalog plus the operator-added Replicate and fal models."""
    return Catalog.load(override_path=write_catalog(tmp_path_factory.mktemp("catalog"),
                                                    [PAINTER, FAL_MODEL]))


def run_to_the_end(adapter, job: Job) -> Done:
    """Start the job, then poll it (without waiting: the fakes move on at each look)."""
    result = adapter.start(job)
    for _ in range(20):
        if isinstance(result, Done):
            return result
        assert isinstance(result, Pending)
        job = Job(job.run_id, job.spec, job.input, job.deadline_at, job.attempt,
                  result.upstream_id, result.state)
        result = adapter.poll(job)
    raise AssertionError("the job never finished")


@pytest.mark.parametrize("form", ["bare", "versioned"])
@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_base_url_works_with_and_without_the_api_version(catalog, provider, form):
    make_app, model, credentials, variable, version = PROVIDERS[provider]
    state, server = start_fake(make_app)
    try:
        base = server.url + ((version or "/") if form == "versioned" else "")
        env = {**credentials, variable: base}
        # The guard as in production: outputs on the fake's own (loopback) origin must
        # still arrive, fetched through the provider's client.
        context = ProviderContext(env=env, fetcher=net.Fetcher(allow_loopback=False))
        spec = catalog.get(model)
        job = Job("run_base_url", spec, validate_input(spec, {"prompt": "a red fox"}),
                  datetime.now(timezone.utc) + timedelta(minutes=5), 1)
        done = run_to_the_end(adapter_for(spec, context), job)
    finally:
        stop_soon(server)
    assert done.outputs and all(output.data for output in done.outputs)
    assert all(output.content_type.startswith(("image/", "video/")) for output in done.outputs)
    assert state.calls  # the fake was reached (a wrong path would have been a 404 above)


@pytest.mark.parametrize("value, version, expected", [
    ("https://api.replicate.com", "/v1", "https://api.replicate.com/v1"),
    ("https://api.replicate.com/v1/", "/v1", "https://api.replicate.com/v1"),
    ("https://generativelanguage.googleapis.com", "/v1beta",
     "https://generativelanguage.googleapis.com/v1beta"),
    ("https://generativelanguage.googleapis.com/v1", "/v1beta",
     "https://generativelanguage.googleapis.com/v1"),  # an explicit version is kept
    ("https://ark.cn-beijing.volces.com/api", "/api/v3", "https://ark.cn-beijing.volces.com/api/v3"),
    ("http://10.0.0.5:8080/openai", "/v1", "http://10.0.0.5:8080/openai/v1"),
    ("https://queue.fal.run/", "", "https://queue.fal.run"),
    ("", "/v1", "https://default.example/v1"),
])
def test_configured_base_url_normalises_both_forms(value, version, expected):
    env = {"X_BASE_URL": value} if value else {}
    assert configured_base_url(env, "X_BASE_URL", "https://default.example", version) == expected
