"""Which models are available with which variables, and where their runs go."""
from __future__ import annotations

import html
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from runbase_web.catalog import Catalog, CatalogError, effective_adapter
from tests.conftest import wait_for_run
from tests.fakes import runbase as fake_runbase
from tests.providers.support import (
    PAINTER, start_fake, write_catalog)

UPSTREAM = {"RUNBASE_UPSTREAM_URL": "https://runbase.example", "RUNBASE_UPSTREAM_KEY": "sk-up"}


@pytest.fixture
def catalog(tmp_path):
    """The packaged catalog plus an operator-added Replicate model."""
    return Catalog.load(override_path=write_catalog(tmp_path, [PAINTER]))


def run_error(client, auth, model: str) -> dict:
    response = client.post("/api/v1/runs", json={"model": model, "input": {"prompt": "p"}},
                           headers=auth)
    assert response.status_code == 400
    return response.get_json()["error"]


# --- through the API ---------------------------------------------------------------------------


def test_without_variables_a_public_model_is_unavailable_naming_its_key(app, client, auth):
    error = run_error(client, auth, "openai/gpt-image-2")
    assert error["code"] == "model_not_found" and "OPENAI_API_KEY" in error["message"]


@pytest.fixture
def painter_without_token(app_config, tmp_path):
    app_config["CATALOG_PATH"] = write_catalog(tmp_path, [PAINTER])
    app_config["PROVIDER_ENV"] = dict(UPSTREAM)  # an upstream does not help operator-added models


def test_added_replicate_model_without_token_is_unavailable_naming_it(painter_without_token, app,
                                                                      client, auth):
    error = run_error(client, auth, "replicate/acme/painter")
    assert error["code"] == "model_not_found" and "REPLICATE_API_TOKEN" in error["message"]


@pytest.fixture
def upstream_fake(app_config):
    state, server = start_fake(fake_runbase.make_app)
    app_config.update(PROVIDER_ENV={"RUNBASE_UPSTREAM_URL": server.url,
                                    "RUNBASE_UPSTREAM_KEY": "sk-upstream-test"},
                      FETCH_ALLOW_LOOPBACK=True)
    yield SimpleNamespace(state=state)
    server.stop()


def test_with_upstream_variables_the_model_is_available_and_runs_upstream(upstream_fake, app, client,
                                                                          auth, worker):
    response = client.post("/api/v1/runs", json={"model": "openai/gpt-image-2",
                                                 "input": {"prompt": "p"}}, headers=auth)
    assert response.status_code == 201, response.get_json()
    done = wait_for_run(app, response.get_json()["id"])
    assert done.status == "succeeded", done.error
    [call] = upstream_fake.state.calls_to("POST", "/api/v1/runs")
    assert call.json["model"] == "openai/gpt-image-2"


@pytest.fixture
def upstream_and_painter(app_config, tmp_path):
    app_config["CATALOG_PATH"] = write_catalog(tmp_path, [PAINTER])
    app_config["PROVIDER_ENV"] = dict(UPSTREAM)


def test_playground_picker_shows_availability_and_reasons(upstream_and_painter, client):
    text = html.unescape(client.get("/playground").text)
    option = re.compile(r'href="/playground\?model=(?P<id>[^"]+)".*?</a>', re.S)
    needs = {m.group("id"): "needs" in m.group(0) for m in option.finditer(text)}
    assert needs["openai/gpt-image-2"] is False and needs["kling/kling-3.0"] is False
    assert needs["replicate/acme/painter"] is True
    assert "needs REPLICATE_API_TOKEN" in text and "needs OPENAI_API_KEY" not in text


# --- the rule itself ---------------------------------------------------------------------------


def test_public_model_needs_its_own_key_or_the_upstream(catalog):
    spec = catalog.get("openai/gpt-image-2")
    assert spec.missing_env({}) == ["OPENAI_API_KEY"] and effective_adapter(spec, {}) == "openai"
    assert spec.is_available(UPSTREAM) and effective_adapter(spec, UPSTREAM) == "runbase"
    # Half the upstream variables are not enough.
    only_url = {"RUNBASE_UPSTREAM_URL": UPSTREAM["RUNBASE_UPSTREAM_URL"]}
    assert spec.missing_env(only_url) == ["OPENAI_API_KEY"]
    assert effective_adapter(spec, only_url) == "openai"


def test_own_credentials_win_over_the_upstream(catalog):
    spec = catalog.get("kling/kling-3.0")
    both = {**UPSTREAM, "KLING_ACCESS_KEY": "ak", "KLING_SECRET_KEY": "sk"}
    assert spec.is_available(both) and effective_adapter(spec, both) == "kling"
    # One of two Kling keys missing: the upstream serves it.
    assert effective_adapter(spec, {**UPSTREAM, "KLING_ACCESS_KEY": "ak"}) == "runbase"


def test_local_models_never_go_upstream(catalog):
    spec = catalog.get("local/sketch")
    assert spec.is_available({}) and effective_adapter(spec, UPSTREAM) == "local"


def test_operator_added_models_are_not_routed_upstream(catalog):
    painter = catalog.get("replicate/acme/painter")
    assert painter.missing_env(UPSTREAM) == ["REPLICATE_API_TOKEN"]
    assert effective_adapter(painter, UPSTREAM) == "replicate"
    assert painter.is_available({"REPLICATE_API_TOKEN": "r8"})


def test_forced_upstream_model_needs_the_upstream_variables(tmp_path):
    catalog = Catalog.load(override_path=write_catalog(
        tmp_path, [{"id": "google/veo-3", "adapter": "runbase"}]))
    spec = catalog.get("google/veo-3")
    assert spec.missing_env({"GEMINI_API_KEY": "g"}) == ["RUNBASE_UPSTREAM_URL", "RUNBASE_UPSTREAM_KEY"]
    assert spec.is_available(UPSTREAM)
    assert effective_adapter(spec, {**UPSTREAM, "GEMINI_API_KEY": "g"}) == "runbase"


# --- input_map checks ----------------------------------------------------------------------------


@pytest.mark.parametrize("change, message", [
    ({"input_map": {"image_urls": "image"}, "adapter": "openai"}, "only used by the fal and replicate"),
    ({"input_map": {"nope": "image"}}, "'nope' is not a property"),
    ({"input_map": {"image_urls": "image[1]"}}, "must be a field name"),
    ({"input_map": ["image_urls"]}, "\"input_map\" must be an object"),
])
def test_bad_input_map_stops_loading(tmp_path, change, message):
    with pytest.raises(CatalogError, match="replicate/acme/painter") as info:
        Catalog.load(override_path=write_catalog(tmp_path, [{**PAINTER, **change}]))
    assert message in str(info.value)


def test_catalog_examples_in_the_docs_load(tmp_path):
    text = (Path(__file__).resolve().parents[2] / "docs" / "providers.md").read_text()
    blocks = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, re.S)]
    added = [entry for block in blocks for entry in block["models"] if "input_schema" in entry]
    assert {entry["adapter"] for entry in added} == {"replicate", "fal"}
    catalog = Catalog.load(override_path=write_catalog(tmp_path, [e for b in blocks for e in b["models"]]))
    flux = catalog.get("replicate/black-forest-labs/flux-schnell")
    assert flux.missing_env({}) == ["REPLICATE_API_TOKEN"]
    assert catalog.get("fal/fal-ai/flux/dev").missing_env({"FAL_KEY": "k"}) == []
