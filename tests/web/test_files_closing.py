"""Files sent by the app are closed whatever the client does: under Werkzeug's own server
(`python app.py`, the browser tests) a response abandoned mid-download is never closed by
the server, and a 304 is closed without ever being read."""
from __future__ import annotations

import gc

from flask import send_file

from runbase_web.files_web import close_when_dropped

WERKZEUG = {"SERVER_SOFTWARE": "Werkzeug/3.1.8"}


def _sent(tmp_path):
    """(response, its open file) for a 100 kB file sent as under Werkzeug's server; call
    inside a request context with WERKZEUG's environ."""
    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 100_000)
    response = close_when_dropped(send_file(path))
    return response, response.response._chunks.file


def test_a_response_never_read_is_closed_by_close(app, tmp_path):
    with app.test_request_context(environ_overrides=WERKZEUG):
        response, handle = _sent(tmp_path)
        response.close()
    assert handle.closed


def test_a_download_dropped_midway_is_closed_when_dropped(app, tmp_path):
    with app.test_request_context(environ_overrides=WERKZEUG):
        response, handle = _sent(tmp_path)
        chunks = iter(response.response)
        next(chunks)  # the client read one chunk, then went away; nobody calls close()
        del chunks, response
        gc.collect()
        assert handle.closed


def test_a_response_dropped_unread_without_close_is_closed(app, tmp_path):
    with app.test_request_context(environ_overrides=WERKZEUG):
        response, handle = _sent(tmp_path)
        del response  # abandoned by the server before its first chunk, never closed
        gc.collect()
        assert handle.closed


def test_gunicorn_gets_the_response_as_it_was(app, tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"x")
    with app.test_request_context(environ_overrides={"SERVER_SOFTWARE": "gunicorn/27.0.1"}):
        response = send_file(path)
        original = response.response
        assert close_when_dropped(response).response is original
        response.close()
