"""What every adapter shares (runbase_web/providers/common.py): one credentials check with
one error code, one poll schedule, and adapters that import nothing from each other."""
from __future__ import annotations

import ast
import dataclasses
import urllib.request
from datetime import datetime, timedelta, timezone
from http.cookiejar import Cookie
from pathlib import Path

import pytest
import requests

from runbase_web.catalog import UPSTREAM_ENV, Catalog
from runbase_web.providers import registry
from runbase_web.providers.base import Job, ProviderContext, ProviderError
from runbase_web.providers.common import POLL_SCHEDULE, ProviderAdapter, poll_delay
from runbase_web.providers.http import ProviderClient, pooled_session
from tests.providers.support import PAINTER, write_catalog

PROVIDERS = Path(__file__).resolve().parents[2] / "runbase_web" / "providers"
FAL_MODEL = {**PAINTER, "id": "fal/fal-ai/flux/dev", "adapter": "fal", "upstream": "fal-ai/flux/dev",
             "requires_env": ["FAL_KEY"], "input_map": {}}
#: A public model forced to the upstream Runbase: it needs the upstream variables only.
FORCED = {"id": "google/nano-banana-pro", "adapter": "runbase"}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    """The packaged catalog plus an operator-added Replicate and fal model, and a forced one."""
    return Catalog.load(override_path=write_catalog(tmp_path_factory.mktemp("catalog"),
                                                    [PAINTER, FAL_MODEL, FORCED]))


def one_model_per_adapter(catalog) -> dict:
    """{adapter name: a model it serves} for every adapter that needs credentials."""
    specs = {}
    for spec in catalog.all():
        specs.setdefault(spec.adapter, spec)
    specs.pop("local")
    return specs


def job(spec=None, *, seconds: float = 300, upstream_id=None, state=None) -> Job:
    """A job with `seconds` left before its deadline."""
    deadline = datetime.now(timezone.utc) + timedelta(seconds=seconds)
    return Job("run_common", spec, {"prompt": "p"}, deadline, 1, upstream_id, state)


# --- credentials ---------------------------------------------------------------------------


def test_every_adapter_with_credentials_is_listed(catalog):
    assert set(one_model_per_adapter(catalog)) == set(registry.ADAPTERS) - {"local"}


@pytest.mark.parametrize("adapter", sorted(set(registry.ADAPTERS) - {"local"}))
def test_missing_credentials_are_model_unavailable_for_every_adapter(catalog, adapter):
    spec = one_model_per_adapter(catalog)[adapter]
    with pytest.raises(ProviderError) as info:
        registry.adapter_for(spec, ProviderContext(env={}))
    assert info.value.code == "model_unavailable" and not info.value.retryable
    needed = UPSTREAM_ENV if adapter == "runbase" else spec.requires_env
    assert needed and all(name in info.value.message for name in needed)
    assert "not set on this server" in info.value.message


def test_one_of_two_credentials_missing_names_only_that_one(catalog):
    spec = catalog.get("kling/kling-3.0")
    with pytest.raises(ProviderError) as info:
        registry.adapter_for(spec, ProviderContext(env={"KLING_ACCESS_KEY": "ak"}))
    assert info.value.message == "KLING_SECRET_KEY is not set on this server."


def test_credentials_come_from_the_catalog_s_requires_env(catalog):
    # An entry that does not list the variable its adapter reads is a catalog mistake, even
    # when the variable happens to be set: the check has one source, requires_env.
    spec = dataclasses.replace(catalog.get("openai/gpt-image-2"), requires_env=())
    with pytest.raises(ProviderError) as info:
        registry.adapter_for(spec, ProviderContext(env={"OPENAI_API_KEY": "sk"}))
    assert info.value.code == "model_unavailable" and "requires_env" in info.value.message


def test_the_adapter_a_run_started_with_wins_over_routing(catalog):
    spec = catalog.get("openai/gpt-image-2")
    env = {"OPENAI_API_KEY": "sk", "RUNBASE_UPSTREAM_URL": "https://runbase.example",
           "RUNBASE_UPSTREAM_KEY": "sk-up"}
    assert type(registry.adapter_for(spec, ProviderContext(env=env))).__name__ == \
        "OpenAIImagesAdapter"
    pinned = registry.adapter_for(spec, ProviderContext(env=env, adapter="runbase"))
    assert type(pinned).__name__ == "UpstreamRunbaseAdapter"


def test_the_context_has_no_options():
    # Named, typed fields only: no catch-all bag of options for adapters to dig in.
    assert [f.name for f in dataclasses.fields(ProviderContext)] == [
        "env", "fetcher", "adapter", "callback_url", "callback_poll_seconds", "read_own_file"]


# --- polling -------------------------------------------------------------------------------


def test_poll_delay_follows_the_schedule_and_repeats_its_last_step():
    delays = [poll_delay(job(), polls) for polls in range(len(POLL_SCHEDULE) + 3)]
    assert delays == list(POLL_SCHEDULE) + [POLL_SCHEDULE[-1]] * 3
    assert [poll_delay(job(), polls, (8.0, 10.0)) for polls in range(3)] == [8.0, 10.0, 10.0]


def test_poll_delay_never_sleeps_past_the_deadline():
    assert 1.5 < poll_delay(job(seconds=2), 0, (5.0,)) <= 2.0
    assert poll_delay(job(seconds=-1), 0, (5.0,)) == 0.05


def test_pending_counts_the_looks_and_keeps_the_adapter_s_state(monkeypatch):
    monkeypatch.setattr(ProviderAdapter, "POLL_SCHEDULE", (1.0, 2.0, 3.0))
    adapter = ProviderAdapter()
    submitted = adapter.pending(job(), "up-1", {"family": "text2video"})
    assert (submitted.upstream_id, submitted.check_after) == ("up-1", 1.0)
    assert submitted.state == {"family": "text2video", "polls": 0}
    looked = adapter.pending(job(upstream_id="up-1", state=submitted.state), "up-1",
                             {"family": "text2video"})
    assert looked.check_after == 2.0 and looked.state == {"family": "text2video", "polls": 1}


# --- one direction of dependencies ---------------------------------------------------------


def imported_modules(path: Path) -> set[str]:
    """The sibling modules a provider module imports (`from .x import …`, `from . import x`)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names |= {node.module} if node.module else {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "runbase_web.providers."):
            names.add(node.module.rsplit(".", 1)[1])
    return names


def test_no_adapter_imports_another_adapter():
    adapters = {module for module, _class in registry.ADAPTERS.values()}
    for module in sorted(adapters):
        others = imported_modules(PROVIDERS / f"{module}.py") & (adapters - {module})
        assert not others, f"{module}.py imports the adapter module(s) {sorted(others)}"


def test_every_adapter_is_a_provider_adapter():
    for module, class_name in registry.ADAPTERS.values():
        cls = getattr(__import__(f"runbase_web.providers.{module}", fromlist=[class_name]),
                      class_name)
        assert issubclass(cls, ProviderAdapter), class_name


def test_clients_of_one_origin_share_a_pooled_session_without_cookies():
    first = ProviderClient(base_url="https://api.example.test/v1")
    second = ProviderClient(base_url="https://api.example.test/v2")
    other = ProviderClient(base_url="https://other.example.test/v1")
    assert first.session is second.session is pooled_session("https://api.example.test")
    assert other.session is not first.session
    assert first.session.get_adapter("https://api.example.test/").poolmanager.connection_pool_kw[
        "maxsize"] >= 8  # the worker's threads don't queue for a connection
    assert not first.session.cookies.get_policy().set_ok(
        _cookie("tracker"), _request("https://api.example.test/v1/x"))


def test_a_pooled_session_reads_proxies_and_ca_bundle_once_and_never_netrc(monkeypatch, tmp_path):
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine proxied.example.test login someone password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.test:3128")
    monkeypatch.setenv("NO_PROXY", "direct.example.test")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "bundle.pem"))
    proxied = pooled_session("https://proxied.example.test")
    direct = pooled_session("https://direct.example.test")
    assert proxied.proxies.get("https") == "http://proxy.example.test:3128"
    assert "https" not in direct.proxies  # NO_PROXY still holds
    assert proxied.verify == str(tmp_path / "bundle.pem")
    request = proxied.prepare_request(requests.Request(
        "GET", "https://proxied.example.test/v1/x", headers={"Authorization": "Bearer sk-ours"}))
    assert request.headers["Authorization"] == "Bearer sk-ours"  # not the netrc login


def _cookie(name):
    return Cookie(0, name, "1", None, False, "api.example.test", True, False, "/", True, False,
                  None, False, None, None, {})


def _request(url):
    return urllib.request.Request(url)
