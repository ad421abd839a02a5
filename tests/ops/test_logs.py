"""Request ids (accepted when safe, else generated; echoed) and the per-request log
record, in text and JSON."""
from __future__ import annotations

import io
import json
import logging
import re

import pytest

from runbase_web import logs


def test_a_safe_request_id_is_kept_and_echoed(client):
    response = client.get("/healthz", headers={"X-Request-Id": "lb-7f3a.42_x"})
    assert response.headers["X-Request-Id"] == "lb-7f3a.42_x"


@pytest.mark.parametrize("given", ["", "a" * 65, "has space", "semi;colon", "new\u00e9", "<script>"])
def test_an_unsafe_or_missing_request_id_is_replaced(client, given):
    response = client.get("/healthz", headers={"X-Request-Id": given} if given else {})
    assert re.fullmatch(r"[0-9a-f]{16}", response.headers["X-Request-Id"])


def test_ids_differ_between_requests(client):
    assert client.get("/healthz").headers["X-Request-Id"] != client.get("/healthz").headers["X-Request-Id"]


def test_one_record_per_request_with_its_fields(client, caplog):
    with caplog.at_level(logging.INFO, logger="runbase.requests"):
        response = client.get("/api/v1/runs/run_missing", headers={"X-Request-Id": "abc-123"})
    records = [r for r in caplog.records if r.name == "runbase.requests"]
    assert len(records) == 1
    record = records[0]
    assert (record.request_id, record.method, record.path, record.status) == \
        ("abc-123", "GET", "/api/v1/runs/run_missing", response.status_code)
    assert record.duration_ms >= 0


def test_tokens_in_paths_are_masked(client, caplog):
    with caplog.at_level(logging.INFO, logger="runbase.requests"):
        client.get("/s/very-secret-share-token")
    [record] = [r for r in caplog.records if r.name == "runbase.requests"]
    assert record.path == "/s/[token]"
    assert "very-secret-share-token" not in record.getMessage()


@pytest.fixture
def json_stream():
    """JSON logs into a buffer for one test; the root logger is put back afterwards."""
    root, werkzeug = logging.getLogger(), logging.getLogger("werkzeug")
    saved = (list(root.handlers), root.level, werkzeug.level)
    stream = io.StringIO()
    logs.use_json_logs(stream)
    yield stream
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    werkzeug.setLevel(saved[2])


def test_json_lines_carry_the_request_id(app, client, json_stream):
    @app.get("/test-logs-inside")
    def inside():
        logging.getLogger("runbase.test").warning("something inside the request")
        return "ok"

    response = client.get("/test-logs-inside", headers={"X-Request-Id": "req-1"})
    lines = [json.loads(line) for line in json_stream.getvalue().splitlines()]
    inner = [line for line in lines if line["logger"] == "runbase.test"]
    request_lines = [line for line in lines if line["logger"] == "runbase.requests"]
    assert response.headers["X-Request-Id"] == "req-1"
    assert inner[0]["request_id"] == "req-1" and inner[0]["level"] == "WARNING"
    assert len(request_lines) == 1
    line = request_lines[0]
    assert {key: line[key] for key in ("request_id", "method", "path", "status")} == \
        {"request_id": "req-1", "method": "GET", "path": "/test-logs-inside", "status": 200}
    assert line["ts"].endswith("Z") and isinstance(line["duration_ms"], float)


def test_exceptions_are_one_json_line(json_stream):
    try:
        raise ValueError("broken")
    except ValueError:
        logging.getLogger("runbase.test").exception("failed")
    [line] = [json.loads(text) for text in json_stream.getvalue().splitlines()]
    assert line["message"] == "failed" and "ValueError: broken" in line["exception"]
