"""Fixtures of the browser-side tests."""
from __future__ import annotations

import pytest
from playwright.sync_api import Page


@pytest.fixture
def problems(page: Page):
    """Console messages about the CSP and uncaught page errors, collected as they happen."""
    seen: list[str] = []
    page.on("console", lambda msg: seen.append(f"console {msg.type}: {msg.text}")
            if "Content Security Policy" in msg.text or msg.type == "error" else None)
    page.on("pageerror", lambda error: seen.append(f"pageerror: {error}"))
    yield seen
    assert [p for p in seen if "Content Security Policy" in p] == []
    assert [p for p in seen if p.startswith("pageerror")] == []
