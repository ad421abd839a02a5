"""Flask's per-request machinery, trimmed: every hook and view is asked whether it is
`async def` once per function, not on every request (RunbaseFlask.ensure_sync)."""
from __future__ import annotations

import runbase_web


def test_hooks_are_checked_for_async_once_not_per_request(app, client, monkeypatch):
    asked: list = []
    real = runbase_web.iscoroutinefunction

    def counting(func):
        asked.append(func)
        return real(func)

    monkeypatch.setattr(runbase_web, "iscoroutinefunction", counting)
    assert client.get("/api/v1/models").status_code == 200
    first = len(asked)
    assert first > 5  # the app's hooks and the view
    for _ in range(3):
        assert client.get("/api/v1/models").status_code == 200
    assert len(asked) == first


def test_a_function_that_cannot_be_weakly_referenced_is_still_run(app):
    runner = app.ensure_sync(len)  # a builtin: Flask's own check, every time
    assert runner is len and runner("abc") == 3
