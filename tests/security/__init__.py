"""Hardening tests: CSRF, XSS, headers, redirects,
file serving, body limits and API key handling.

The shared XSS corpus and an HTML inspector live here.
"""
from __future__ import annotations

from html.parser import HTMLParser

#: Stored as prompts and key names; every item must come back as inert text. Each one
#: would request a URL containing "pwned" if it ever ran (or /settings/keys, for htmx).
XSS_CORPUS = [
    "<script>fetch('/pwned?script')</script>",
    "<img src=x onerror=fetch('/pwned?img')>",
    '<img src="/pwned?src">',
    '<div hx-get="/pwned?htmx" hx-trigger="load">x</div>',
    '<div hx-get="/settings/keys" hx-trigger="load" hx-target="body">keys</div>',
    "{{7*7}} {% print 7*7 %}",
    "<a href=\"javascript:fetch('/pwned?js')\">click me</a>",
    '<svg onload="fetch(\'/pwned?svg\')"><script>fetch("/pwned?svgs")</script></svg>',
    '"><img src=/pwned?attr-dq onerror=fetch(\'/pwned?dq\')>',
    "'><iframe src=/pwned?attr-sq></iframe>",
    "<style>@import '/pwned?css';</style><link rel=stylesheet href=/pwned?link>",
    '<form action="/pwned?form"><button formaction="/pwned?fa">go</button></form>',
]


#: Attributes whose value the browser (or htmx) fetches or navigates to. Elsewhere, e.g.
#: in aria-label or value, the corpus is just (escaped) text.
URL_ATTRIBUTES = {"src", "href", "action", "formaction", "poster", "data", "srcset",
                  "background", "style", "ping", "xlink:href"}


class TagCollector(HTMLParser):
    """Every start tag of a page, with its attributes, and inline script/style text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline: list[tuple[str, str]] = []
        self._open: str | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._open = tag if tag in ("script", "style") else None

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        if self._open and data.strip():
            self.inline.append((self._open, data))

    def handle_endtag(self, tag):
        self._open = None


def injected_markup(html: str) -> list[str]:
    """What in `html` would be live markup an attacker placed: event handlers, inline
    script/style, iframes, javascript: URLs, and any attribute pointing at "pwned"."""
    collector = TagCollector()
    collector.feed(html)
    found = [f"inline <{tag}>: {text[:60]}" for tag, text in collector.inline]
    for tag, attrs in collector.tags:
        if tag in ("iframe", "object", "embed", "style"):
            found.append(f"<{tag}>")
        if tag == "script" and not (attrs.get("src") or "").startswith("/static/"):
            found.append(f"<script src={attrs.get('src')!r}>")
        for name, value in attrs.items():
            value = value or ""
            if name.startswith("on"):
                found.append(f"<{tag} {name}=...>")
            loads = name in URL_ATTRIBUTES or name.startswith("hx-")
            if loads and ("pwned" in value or value.strip().lower().startswith("javascript:")):
                found.append(f"<{tag} {name}={value!r}>")
        if attrs.get("hx-get") == "/settings/keys" and attrs.get("hx-trigger") == "load":
            found.append(f"<{tag} hx-get=/settings/keys hx-trigger=load>")
    return found
