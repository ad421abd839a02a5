"""/healthz and /readyz on SQLite and PostgreSQL: answers, failures, no secrets."""
from __future__ import annotations

import socket

import pytest
from sqlalchemy import text

from runbase_web.extensions import db
from runbase_web.state import STORAGE
from runbase_web.storage import LocalStorage
from tests.support.redis_server import RedisServer, redis_available


def test_healthz_answers_without_looking_at_anything(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
    assert response.headers["Cache-Control"] == "no-store"


def test_readyz_reports_each_check_with_its_timing(client):
    response = client.get("/readyz")
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "storage"}  # no Redis configured
    for check in body["checks"].values():
        assert check["ok"] is True and 0 <= check["ms"] < 2000


def test_readyz_is_503_when_the_schema_is_behind(app, client):
    with app.app_context():
        head = db.session.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        db.session.execute(text("UPDATE alembic_version SET version_num = 'older'"))
        db.session.commit()
    try:
        response = client.get("/readyz")
    finally:
        with app.app_context():
            db.session.execute(text("UPDATE alembic_version SET version_num = :head"), {"head": head})
            db.session.commit()
    body = response.get_json()
    assert response.status_code == 503 and body["status"] == "unavailable"
    assert body["checks"]["database"]["ok"] is False
    assert "newest migration" in body["checks"]["database"]["detail"]
    assert body["checks"]["storage"]["ok"] is True
    assert head not in response.get_data(as_text=True)  # no versions shown


def test_readyz_is_503_when_storage_cannot_be_written(app, client, tmp_path):
    gone = tmp_path / "gone"
    app.extensions[STORAGE] = LocalStorage(gone)
    gone.rmdir()
    response = client.get("/readyz")
    assert response.status_code == 503
    storage = response.get_json()["checks"]["storage"]
    assert storage["ok"] is False and storage["detail"].startswith("not writable")
    assert str(tmp_path) not in response.get_data(as_text=True)


def test_readyz_leaves_no_probe_files_behind(app, client):
    client.get("/readyz")
    root = app.extensions[STORAGE].root
    assert [path.name for path in root.iterdir()] == []


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.skipif(not redis_available(), reason="redis-server is not installed")
def test_readyz_checks_redis_when_configured(app, client):
    server = RedisServer().start()
    try:
        app.config["REDIS_URL"] = server.url
        answer = client.get("/readyz")
        assert answer.status_code == 200 and answer.get_json()["checks"]["redis"]["ok"] is True
    finally:
        server.stop()
    app.extensions.pop("runbase.health_redis")
    app.config["REDIS_URL"] = f"redis://:hunter2secret@127.0.0.1:{_closed_port()}/0"
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.get_json()["checks"]["redis"]["detail"].startswith("unreachable")
    assert "hunter2secret" not in answer.get_data(as_text=True)
