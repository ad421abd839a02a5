"""The API docs (/docs): written for this server (its base URL, its models, its rate
limit), and an error reference generated from the error classes, checked against the hosted service's error table."""
from __future__ import annotations

import html
import json
import re

import pytest

from runbase_web import state
from runbase_web.presenters.api_errors import ERROR_CAUSES, api_error_classes
from runbase_web.web.catalog_views import DOC_PAGES
from tests.web.test_models_pages import curl_parts, marked, snippet

#: The hosted Runbase API's error table, status and code, copied verbatim: the docs
#: must list every one of them, with the same status.
API_MD_ERRORS = [
    (400, "invalid_json"), (400, "missing_model"), (400, "missing_input"),
    (400, "invalid_input"), (400, "model_not_found"), (401, "missing_api_key"),
    (401, "invalid_api_key"), (402, "insufficient_balance"),
    (403, "api_key_spend_limit_exceeded"), (403, "ip_not_allowed"), (404, "run_not_found"),
    (429, "RATE_LIMITED"), (500, "internal_error"),
    # Named in its prose: unknown routes, and the Idempotency-Key extension.
    (404, "not_found"), (405, "method_not_allowed"), (422, "idempotency_key_reused"),
]
PATHS = ["/docs"] + [f"/docs/{slug}" for slug in DOC_PAGES]


def error_table(client) -> dict[str, int]:
    """{code: HTTP status} as the errors page lists them."""
    rows = marked(client.get("/docs/errors").text, "data-error-code")
    return {attrs["data-error-code"]: int(attrs["data-status"]) for attrs, _ in rows}


def test_every_page_renders_with_the_nav(client):
    for path in PATHS:
        page = client.get(path)
        assert page.status_code == 200, path
        for slug, title in DOC_PAGES.items():
            assert f'href="/docs/{slug}"' in page.text and title in page.text
        # The side nav marks this page; the site nav marks Docs as the current section.
        side_nav = page.text.split('aria-label="Docs"', 1)[1]
        current = re.findall(r'<a href="([^"]+)" aria-current="page">', side_nav)
        assert current == [path]
        assert 'href="/api/v1/openapi.json"' in page.text
    response = client.get("/docs/nothing-here")
    assert response.status_code == 404 and response.mimetype == "text/html"


@pytest.mark.parametrize("app_config", [{"PUBLIC_URL": "https://gen.example.com"}])
def test_examples_use_this_servers_base_url(client):
    for path in PATHS:
        text = html.unescape(client.get(path).text)
        assert "https://gen.example.com" in text, path
        assert "runbase.net" not in text and "http://localhost" not in text, path
    quickstart = client.get("/docs/quickstart").text
    assert curl_parts(snippet(quickstart, "quickstart-curl"))[0] == "https://gen.example.com/api/v1/runs"


@pytest.mark.parametrize("app_config", [{"ALLOWED_HOSTS": ("runbase.lan",)}])
def test_base_url_defaults_to_the_requests_host(client):
    # Only for hosts the operator allows: any other Host is refused (tests/security/test_hosts.py).
    text = client.get("/docs/quickstart", base_url="http://runbase.lan:8080").text
    assert "http://runbase.lan:8080/api/v1/runs" in html.unescape(text)


def test_examples_name_models_this_server_has(app, client):
    catalog = state.catalog(app)
    for path in PATHS:
        text = html.unescape(client.get(path).text)
        for model_id in re.findall(r'"model": "([^"]+)"', text):
            assert model_id in catalog and catalog.get(model_id).is_available({}), (path, model_id)
    assert "local/sketch" in client.get("/docs/quickstart").text


def test_quickstart_curl_creates_the_run_it_shows(client, auth):
    page = client.get("/docs/quickstart").text
    _url, body = curl_parts(snippet(page, "quickstart-curl"))
    created = client.post("/api/v1/runs", json=body, headers=auth)
    assert created.status_code == 201, created.text
    shown = json.loads(snippet(page, "create-response").replace("run_2abc...", "run_x"))
    assert shown["costUsd"] == created.get_json()["costUsd"]
    echoed = created.get_json()["input"]
    assert shown["input"] == {**echoed, "seed": shown["input"]["seed"]}


def test_errors_page_lists_every_code_of_api_md(client):
    listed = error_table(client)
    for status, code in API_MD_ERRORS:
        assert listed.get(code) == status, code


def test_errors_page_is_generated_from_the_error_classes(client):
    listed = error_table(client)
    classes = api_error_classes()
    assert {cls.code: cls.status for cls in classes} == listed
    # Every class has its cause written out: a new error cannot ship undocumented.
    assert [cls.code for cls in classes if cls.code not in ERROR_CAUSES] == []
    text = client.get("/docs/errors").text
    assert "<td><code>model</code> is missing or not a string.</td>" in text


def test_documented_errors_are_what_the_api_answers(client, auth):
    listed = error_table(client)
    answers = [
        client.post("/api/v1/runs", data="{nope", headers=auth),
        client.post("/api/v1/runs", json={"input": {}}, headers=auth),
        client.post("/api/v1/runs", json={"model": "local/sketch", "input": {}}, headers=auth),
        client.post("/api/v1/runs", json={"model": "acme/none", "input": {}}, headers=auth),
        client.get("/api/v1/runs/run_missing"),
        client.get("/api/v1/runs/run_missing", headers={"Authorization": "Bearer sk-" + "x" * 40}),
        client.get("/api/v1/runs/run_missing", headers=auth),
        client.delete("/api/v1/account", headers=auth),
    ]
    for answer in answers:
        code = answer.get_json()["error"]["code"]
        assert listed[code] == answer.status_code, code


def test_authentication_and_concepts_pages_cover_their_topics(client):
    text = client.get("/docs/authentication").text
    for code in ("missing_api_key", "invalid_api_key", "ip_not_allowed", "api_key_spend_limit_exceeded"):
        assert f"<code>{code}</code>" in text
    assert "Bearer" in text and "sk-" in text and "IP allowlist" in text and "Spend limit" in text
    text = html.unescape(client.get("/docs/concepts").text)
    for status in ("pending", "processing", "succeeded", "failed"):
        assert f"<code>{status}</code>" in text
    for words in ("micro-USD", "Charged when created", "Refunded on failure",
                  "Idempotency-Key", "idempotency_key_reused", "webhook-signature"):
        assert words in text


@pytest.mark.parametrize("app_config", [{"RATE_LIMIT": (3, 10)}])
def test_rate_limit_page_states_the_configured_limit_and_it_holds(client, auth):
    text = client.get("/docs/rate-limits").text
    assert 'data-rate-limit="3/10s">3 requests per 10 seconds<' in text
    assert "Retry-After" in text and "moving window" in text
    answers = [client.get("/api/v1/runs/run_missing", headers=auth) for _ in range(4)]
    assert [a.status_code for a in answers] == [404, 404, 404, 429]
    limited = answers[-1]
    assert limited.get_json()["error"]["code"] == "RATE_LIMITED"
    assert 0 < int(limited.headers["Retry-After"]) <= 10
    for header in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
        assert header in answers[0].headers, header


def test_openapi_documents_the_moving_window_and_its_headers(client):
    document = client.get("/api/v1/openapi.json").get_json()
    limited = document["components"]["responses"]["RateLimited"]
    assert "any span of M seconds" in limited["description"]
    assert {"Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} \
        <= set(limited["headers"])
    create = document["paths"]["/runs"]["post"]["responses"]
    assert create["429"] == {"$ref": "#/components/responses/RateLimited"}


def test_rate_limit_page_when_the_limit_is_off(client):
    # The test app runs with RATE_LIMIT None, i.e. RUNBASE_RATE_LIMIT=off.
    text = client.get("/docs/rate-limits").text
    assert 'data-rate-limit="off"' in text and "RUNBASE_RATE_LIMIT=off" in text


def test_webhook_docs_say_whether_payload_urls_are_absolute(client):
    text = client.get("/docs/concepts").text
    assert 'data-webhook-urls="relative"' in text and "RUNBASE_PUBLIC_URL" in text


@pytest.mark.parametrize("app_config", [{"PUBLIC_URL": "https://gen.example.com"}])
def test_webhook_docs_with_a_public_url(client):
    text = client.get("/docs/concepts").text
    assert 'data-webhook-urls="absolute"' in text and 'data-webhook-urls="relative"' not in text
