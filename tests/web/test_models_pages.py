"""The model catalog pages over the test client: /models (cards, availability, filters)
and /models/<provider>/<name> (input table, price table, runnable examples, the embedded
Playground form)."""
from __future__ import annotations

import html
import json
import os
import re
import shlex
import subprocess
import sys
from html.parser import HTMLParser

import pytest
import requests

from runbase_web import state
from runbase_web.money import format_usd
from runbase_web.catalog import price, validate_input
from runbase_web.web.catalog_presenters import sample_input
from tests.conftest import wait_for_run
from tests.web import HTMX, sign_in

UPSTREAM = {"RUNBASE_UPSTREAM_URL": "http://127.0.0.1:9", "RUNBASE_UPSTREAM_KEY": "sk-up"}


class _Marked(HTMLParser):
    """Collects every element carrying attribute `marker`: its attributes and its text."""

    VOID = {"input", "br", "img", "meta", "link", "hr", "source"}

    def __init__(self, marker: str):
        super().__init__(convert_charrefs=True)
        self.marker, self.found, self._open = marker, [], []

    def handle_starttag(self, tag, attrs):
        if tag in self.VOID:
            if self.marker in dict(attrs):
                self.found.append((dict(attrs), ""))
            return
        for item in self._open:
            item[1] += 1 if item[0] == tag else 0
        if self.marker in dict(attrs):
            self._open.append([tag, 1, dict(attrs), []])

    def handle_endtag(self, tag):
        for item in list(self._open):
            if item[0] == tag:
                item[1] -= 1
                if item[1] == 0:
                    self._open.remove(item)
                    self.found.append((item[2], " ".join("".join(item[3]).split())))

    def handle_data(self, data):
        for item in self._open:
            item[3].append(data)


def marked(page: str, marker: str) -> list[tuple[dict, str]]:
    """(attributes, text) of every element in `page` with the attribute `marker`."""
    parser = _Marked(marker)
    parser.feed(page)
    return parser.found


def cards(page: str) -> dict[str, tuple[dict, str]]:
    """The model cards of a catalog page, by model id."""
    return {attrs["data-model-card"]: (attrs, text) for attrs, text in marked(page, "data-model-card")}


def snippet(page: str, name: str) -> str:
    """The text of the code block `name` (what its Copy button copies)."""
    match = re.search(rf'data-snippet="{name}">.*?data-copy="([^"]*)"', page, re.S)
    assert match, f"no {name} snippet"
    return html.unescape(match.group(1))


def curl_parts(command: str) -> tuple[str, dict]:
    """The URL and the JSON body of a `curl -X POST URL ... -d BODY` command."""
    words = [word for word in shlex.split(command) if word != "\n"]
    url = next(word for word in words if word.startswith("http"))
    return url, json.loads(words[words.index("-d") + 1])


# --- the catalog ---------------------------------------------------------------------


def test_index_lists_every_model_with_its_availability(app, client):
    page = client.get("/models")
    assert page.status_code == 200
    listed = cards(page.text)
    catalog = state.catalog(app)
    assert list(listed) == [spec.id for spec in catalog.all()]
    for spec in catalog.all():
        attrs, text = listed[spec.id]
        assert spec.name in text and spec.kind in text and spec.provider in text
        if spec.provider == "local":
            assert attrs["data-available"] == "true" and "available" in text
        else:
            assert attrs["data-available"] == "false"
            assert f"needs {', '.join(spec.requires_env)}" in text
    assert 'href="/models/kling/kling-3.0"' in page.text
    images = cards(client.get("/models?kind=image").text)
    assert list(images) == [spec.id for spec in catalog.all() if spec.kind == "image"]


def test_index_shows_price_summaries(client):
    listed = cards(client.get("/models").text)
    assert "$0.001 / image" in listed["local/sketch"][1]
    assert "$0.002 / s" in listed["local/sketch-video"][1]
    assert "$0.04 / image" in listed["google/nano-banana"][1]
    assert "from $0.06 / image" in listed["google/nano-banana-2"][1]
    assert "from $0.08 / s" in listed["kling/kling-3.0"][1]
    assert "$0.49 / video" in listed["hailuo/pro"][1]


@pytest.mark.parametrize("app_config", [{"PROVIDER_ENV": {"OPENAI_API_KEY": "sk-test"}}])
def test_configured_provider_makes_its_models_available(app, client):
    listed = cards(client.get("/models").text)
    for model_id, (attrs, text) in listed.items():
        expected = model_id.startswith(("openai/", "local/"))
        assert attrs["data-available"] == ("true" if expected else "false"), model_id
        assert ("needs OPENAI_API_KEY" in text) is False
    assert "needs GEMINI_API_KEY" in listed["google/nano-banana"][1]


@pytest.mark.parametrize("app_config", [{"PROVIDER_ENV": dict(UPSTREAM)}])
def test_public_models_are_available_through_the_upstream(client):
    listed = cards(client.get("/models").text)
    assert all(attrs["data-available"] == "true" for attrs, _ in listed.values())
    assert "via upstream Runbase" in listed["openai/gpt-image-1"][1]
    assert "via upstream Runbase" not in listed["local/sketch"][1]


@pytest.mark.parametrize("query, expected", [
    ("provider=openai", ["openai/gpt-image-1", "openai/gpt-image-1.5", "openai/gpt-image-2"]),
    ("kind=video&provider=local", ["local/sketch-video"]),
    ("q=NANO", ["google/nano-banana", "google/nano-banana-2", "google/nano-banana-pro"]),
    ("q=fast+veo", ["google/veo-3"]),  # "Veo 3.1 Fast": the name matches, not the id
    ("q=seedance+2&kind=video", ["bytedance/seedance-2", "bytedance/seedance-2-fast"]),
    ("provider=nobody", []),
])
def test_filters(client, query, expected):
    page = client.get(f"/models?{query}").text
    assert list(cards(page)) == expected
    assert ("No model matches" in page) is (not expected)


def test_filter_form_works_with_and_without_htmx(client):
    full = client.get("/models?provider=local&q=sketch")
    assert "<html" in full.text and 'hx-push-url="true"' in full.text
    assert '<option value="local" selected>local</option>' in full.text
    assert 'value="sketch"' in re.search(r'<input type="search"[^>]*>', full.text).group(0)
    assert re.search(r'<form class="card model-filters" action="/models" method="get"', full.text)

    fragment = client.get("/models?provider=local&q=sketch", headers=HTMX)
    assert "<html" not in fragment.text and fragment.text.lstrip().startswith("<section")
    assert 'id="model-results"' in fragment.text
    assert list(cards(fragment.text)) == ["local/sketch", "local/sketch-video"]
    assert "HX-Request" in fragment.headers["Vary"] and "HX-Request" in full.headers["Vary"]


# --- one model -----------------------------------------------------------------------


def test_unknown_model_is_a_404_page(client):
    for path in ("/models/nobody/nothing", "/models/local/nothing", "/models/local"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.mimetype == "text/html"
    assert "There is no model" in html.unescape(client.get("/models/local/nothing").text)


def test_input_table_rows_match_each_schema(app, client):
    for spec in state.catalog(app).all():
        page = client.get(f"/models/{spec.id}").text
        rows = marked(page, "data-input-row")
        names = [attrs["data-input-row"] for attrs, _ in rows]
        assert names[0] == "prompt" and sorted(names) == sorted(spec.properties), spec.id
        required = set(spec.input_schema.get("required", []))
        for attrs, text in rows:
            prop = spec.properties[attrs["data-input-row"]]
            assert attrs["data-required"] == ("true" if attrs["data-input-row"] in required else "false")
            default = json.dumps(prop["default"], ensure_ascii=False) if "default" in prop else ""
            assert attrs["data-default"] == default, (spec.id, attrs)
            for option in prop.get("enum", []):
                assert f" {option} " in f" {text} ", (spec.id, option)
            if "maximum" in prop:
                assert f"{prop.get('minimum')}–{prop['maximum']}" in text
            if "maxItems" in prop:
                assert f"at most {prop['maxItems']} items" in text
            if "maxLength" in prop:
                assert f"{prop['maxLength']} characters" in text
            assert prop.get("description", "") in text


def test_price_table_equals_the_price_function(app, client):
    for spec in state.catalog(app).all():
        page = client.get(f"/models/{spec.id}").text
        rows = marked(page, "data-price-row")
        tiers = spec.price.get("tiers")
        assert [attrs["data-price-row"] for attrs, _ in rows] == (list(tiers) if tiers else ["Every run"])
        cells = marked(page, "data-price-input")
        assert cells, spec.id
        for attrs, text in cells:
            run_input = validate_input(spec, {"prompt": "a sample prompt",
                                              **json.loads(attrs["data-price-input"])})
            micros = price(spec, run_input)
            assert int(attrs["data-micros"]) == micros and text == format_usd(micros), spec.id
        if "per" in spec.price:
            rates = [int(attrs["data-rate"]) for attrs, _ in marked(page, "data-rate")]
            assert rates == (list(tiers.values()) if tiers else [spec.price["micros"]])


def test_price_table_covers_enum_quantities_and_integer_ranges(client):
    seedance = client.get("/models/bytedance/seedance-1.5-pro").text
    assert len(marked(seedance, "data-price-input")) == 3 * 3  # 3 resolutions × 4/8/12 s
    assert "12 seconds" in seedance and "$1.62" in seedance  # 1080p: 12 × $0.135
    sketch = client.get("/models/local/sketch").text
    shown = [json.loads(attrs["data-price-input"]) for attrs, _ in marked(sketch, "data-price-input")]
    assert shown == [{"num_images": 1}, {"num_images": 4}]
    assert "4 images" in sketch and "$0.004" in sketch


def test_curl_example_creates_a_run(app, client, auth):
    page = client.get("/models/local/sketch").text
    url, body = curl_parts(snippet(page, "curl"))
    assert url == "http://localhost/api/v1/runs"
    assert body == {"model": "local/sketch", "input": sample_input(state.catalog(app).get("local/sketch"))}
    assert body["input"]["prompt"] and body["input"]["num_images"] == 1
    created = client.post("/api/v1/runs", json=body, headers=auth)
    assert created.status_code == 201, created.text
    assert created.get_json()["costUsd"] == 1000


def test_every_models_example_input_is_valid(app, client):
    for spec in state.catalog(app).all():
        _url, body = curl_parts(snippet(client.get(f"/models/{spec.id}").text, "curl"))
        assert body["model"] == spec.id
        validate_input(spec, body["input"])


@pytest.mark.parametrize("app_config", [{"PUBLIC_URL": "https://gen.example.com"}])
def test_examples_use_the_public_url(client):
    page = client.get("/models/local/test").text
    assert curl_parts(snippet(page, "curl"))[0] == "https://gen.example.com/api/v1/runs"
    assert "BASE = 'https://gen.example.com'" in snippet(page, "python")


def test_python_example_runs_to_the_end(app, live_server, api_key):
    page = requests.get(f"{live_server}/models/local/test", timeout=10).text
    code = snippet(page, "python")
    assert f"BASE = '{live_server}'" in code
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "RUNBASE_API_KEY": api_key})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("succeeded {'urls': ['" + live_server + "/files/generated/")


def test_model_page_embeds_the_playground_form(client):
    page = client.get("/models/local/sketch").text
    form = re.search(r"<form id=\"run-form\"[^>]*>", page).group(0)
    assert 'hx-post="/playground/runs"' in form and 'hx-target="#cards"' in form
    assert '<input type="hidden" name="model" value="local/sketch">' in page
    assert re.search(r'<textarea id="f-prompt" name="prompt"', page)
    assert '<div id="cards" class="cards"></div>' in page
    assert 'hx-get="/playground/price"' in page and 'data-price="1000"' in page
    assert 'id="availability" data-available="true"' in page
    assert 'href="/api/v1/openapi.json"' in page


def test_embedded_form_runs_the_model(app, client, user, worker):
    sign_in(client, user.email)
    page = client.get("/models/local/test").text
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page))
    response = client.post("/playground/runs", headers=HTMX,
                           data={**fields, "prompt": "from the model page", "outcome": "succeed"})
    assert response.status_code == 201
    run_id = re.search(r'id="run-(run_[a-z0-9]+)"', response.text).group(1)
    assert wait_for_run(app, run_id).status == "succeeded"


def test_unavailable_model_names_the_variable(client):
    page = client.get("/models/kling/kling-3.0").text
    notice = re.search(r'<div class="alert alert-warn" id="availability".*?</div>', page, re.S).group(0)
    assert "<code>KLING_ACCESS_KEY</code>, <code>KLING_SECRET_KEY</code>" in notice
    assert re.search(r'<button type="submit" class="btn btn-primary btn-run"\s+disabled', page)


def test_model_page_is_laid_out_like_the_other_pages(client):
    """A page head (crumbs, title, facts, the main action) and one card per section, in
    the same container as the runs and keys pages."""
    page = client.get("/models/local/sketch").text
    assert '<main id="main" class="container">' in page
    head = page[page.index('<div class="page-head model-head">'):page.index('<section class="card model-about"')]
    assert '<p class="crumbs small"><a href="/models">Models</a>' in head and "<h1>Sketch (offline)</h1>" in head
    assert 'href="/playground?model=local/sketch">Open in Playground</a>' in head
    for section in ("try", "pricing", "inputs", "api"):
        assert re.search(rf'<section class="card [\w-]+" id="{section}"', page), section
    # A model this server can't run offers no Playground button, and says what it needs.
    other = client.get("/models/openai/gpt-image-1").text
    assert "Open in Playground" not in other and 'data-available="false"' in other
