"""S6: security headers on every response, the exact CSP, and htmx's locked-down config."""
from __future__ import annotations

import json
import re

import pytest
from werkzeug.datastructures import Headers

from runbase_web.responses import add_missing_headers
from runbase_web.security import CONTENT_SECURITY_POLICY
from tests.security import TagCollector
from tests.web import sign_in

EXPECTED_CSP = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:", "blob:"],
    "media-src": ["'self'", "blob:"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}


def parse_csp(value: str) -> dict[str, list[str]]:
    directives = {}
    for part in filter(None, (p.strip() for p in value.split(";"))):
        name, *sources = part.split()
        assert name not in directives, f"duplicate directive {name}"
        directives[name] = sources
    return directives


def page_urls(app) -> list[str]:
    """Every GET page without URL arguments (outside the API and static files)."""
    urls = []
    for rule in app.url_map.iter_rules():
        if "GET" in rule.methods and not rule.arguments and not rule.rule.startswith(("/api/", "/static")):
            urls.append(rule.rule)
    return sorted(urls) + ["/no-such-page"]


def test_csp_is_exactly_the_policy():
    assert parse_csp(CONTENT_SECURITY_POLICY) == EXPECTED_CSP
    for unsafe in ("unsafe-inline", "unsafe-eval", "unsafe-hashes", "*"):
        assert unsafe not in CONTENT_SECURITY_POLICY


@pytest.mark.parametrize("signed_in", [False, True])
def test_every_page_has_the_headers(app, client, user, signed_in):
    if signed_in:
        sign_in(client, user.email)
    checked = 0
    for url in page_urls(app):
        response = client.get(url)
        assert response.headers["X-Content-Type-Options"] == "nosniff", url
        if response.mimetype == "text/html":
            assert parse_csp(response.headers["Content-Security-Policy"]) == EXPECTED_CSP, url
            assert response.headers["X-Frame-Options"] == "DENY", url
            checked += 1
    assert checked >= 5


def test_api_answers_have_nosniff(client, auth):
    for response in (client.get("/api/v1/account", headers=auth), client.get("/api/v1/nope")):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.mimetype == "application/json"


def test_htmx_config_is_locked_down(client):
    page = client.get("/playground").text
    content = re.search(r'<meta name="htmx-config" content=\'([^\']+)\'>', page).group(1)
    config = json.loads(content)
    assert config["selfRequestsOnly"] is True
    assert config["allowEval"] is False
    assert config["allowScriptTags"] is False
    assert config["includeIndicatorStyles"] is False


@pytest.mark.parametrize("url", ["/playground", "/auth/login", "/auth/signup", "/dashboard",
                                 "/settings/keys"])
def test_pages_have_no_inline_script_style_or_handlers(client, user, url):
    sign_in(client, user.email) if url not in ("/auth/login", "/auth/signup") else None
    collector = TagCollector()
    collector.feed(client.get(url).text)
    assert collector.inline == []
    for tag, attrs in collector.tags:
        assert "style" not in attrs, (tag, attrs)
        assert not [name for name in attrs if name.startswith("on")], (tag, attrs)
        assert not [name for name in attrs if name.startswith(("hx-on", "data-hx-on"))], (tag, attrs)
        if tag == "script":
            assert attrs.get("src", "").startswith("/static/"), attrs


def test_a_header_a_view_set_is_kept_whatever_its_case_and_never_doubled():
    headers = Headers([("referrer-policy", "no-referrer")])
    add_missing_headers(headers, [("Referrer-Policy", "same-origin"),
                                  ("X-Content-Type-Options", "nosniff")])
    assert headers.getlist("Referrer-Policy") == ["no-referrer"]
    assert headers.getlist("X-Content-Type-Options") == ["nosniff"]
