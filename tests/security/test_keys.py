"""K1–K4: API keys are never stored or logged in full, shown once, well-formed and
unique, and looked up by their SHA-256 hash."""
from __future__ import annotations

import hashlib
import logging
import re

import pytest
from sqlalchemy import event, select

from runbase_web.extensions import db
from runbase_web.models import ApiKey, Base
from runbase_web.services import keys
from tests.web import sign_in

KEY_FORMAT = re.compile(r"^sk-[A-Za-z0-9_-]{32,}$")


class Captured(logging.Handler):
    """Every log record, from every logger, at DEBUG and up (caplog-free, so it works
    with `-p no:logging` too)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(f"{record.name} {record.getMessage()} {record.args!r} "
                          f"{self.format(record) if record.exc_info else ''}")


@pytest.fixture
def captured_logs():
    handler = Captured()
    root = logging.getLogger()
    # SQL with its parameters too: the likeliest place for a key to leak into logs.
    loggers = [root, logging.getLogger("sqlalchemy.engine"), logging.getLogger("runbase_web")]
    previous = [logger.level for logger in loggers]
    root.addHandler(handler)
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    for logger, level in zip(loggers, previous):
        logger.setLevel(level)


def all_text_in_database(app) -> str:
    """Every value of every column of every table, as text."""
    with app.app_context():
        values = []
        for table in Base.metadata.sorted_tables:
            for row in db.session.execute(select(table)):
                values.extend(repr(value) for value in row)
        return "\n".join(values)


def created_on_page(client) -> str:
    response = client.post("/settings/keys", data={"name": "web key"})
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    match = re.findall(r"sk-[A-Za-z0-9_-]{32,}", response.text)
    assert match, "the new key is shown once"
    return match[0]


def test_k1_full_key_is_never_stored_or_logged(app, client, user, make_key, captured_logs):
    sign_in(client, user.email)
    made = [created_on_page(client), make_key(user, "fixture key")]
    for full_key in made:
        headers = {"Authorization": f"Bearer {full_key}"}
        assert client.get("/api/v1/account", headers=headers).status_code == 200
        assert client.post("/api/v1/runs", json={"model": "local/sketch", "input": {"prompt": "p"}},
                           headers=headers).status_code == 201
        # A mistyped key must not end up in the logs either.
        assert client.get("/api/v1/account", headers={"Authorization": f"Bearer {full_key}x"}
                          ).status_code == 401
    dump = all_text_in_database(app)
    logs = "\n".join(captured_logs.lines)
    assert any("api_keys" in line for line in captured_logs.lines), "the capture works"
    for full_key in made:
        secret = full_key[keys.DISPLAY_LENGTH:]
        assert full_key not in dump and secret not in dump
        assert full_key not in logs and secret not in logs
        assert hashlib.sha256(full_key.encode()).hexdigest() in dump  # only its hash
        assert full_key[:keys.DISPLAY_LENGTH] in dump  # and the display prefix


def test_k2_shown_once(client, user, auth):
    sign_in(client, user.email)
    full_key = created_on_page(client)
    for url in ("/settings/keys", "/dashboard", "/playground"):
        page = client.get(url)
        assert full_key not in page.text, url
        assert full_key[keys.DISPLAY_LENGTH:] not in page.text, url
    assert full_key[:keys.DISPLAY_LENGTH] + "…" in client.get("/settings/keys").text
    with client.application.app_context():
        key_id = db.session.scalar(select(ApiKey.id).where(ApiKey.name == "web key"))
    assert full_key not in client.get(f"/settings/keys/{key_id}/edit").text
    assert full_key not in client.get("/api/v1/account", headers=auth).text


def test_k3_format_and_uniqueness(app, user):
    with app.app_context():
        generated = [keys.create_key(db.session, user.id, f"k{i}")[1] for i in range(1000)]
        db.session.rollback()
    assert len(set(generated)) == 1000
    for full_key in generated:
        assert KEY_FORMAT.match(full_key), full_key
    assert len({k[:keys.DISPLAY_LENGTH] for k in generated}) > 990  # prefixes tell keys apart


def _mutations(full_key: str):
    alphabet = "ABCabc012-_"
    for position in (3, len(full_key) // 2, len(full_key) - 1):
        original = full_key[position]
        replacement = next(ch for ch in alphabet if ch != original)
        yield full_key[:position] + replacement + full_key[position + 1:]
    yield full_key[:-1]
    yield full_key + "A"
    yield full_key.upper()


def test_k4_lookup_is_by_hash_and_near_misses_fail(app, client, api_key):
    for mutated in _mutations(api_key):
        response = client.get("/api/v1/account", headers={"Authorization": f"Bearer {mutated}"})
        assert response.status_code == 401, mutated
    statements = []

    def spy(_conn, _cursor, statement, parameters, _context, _many):
        statements.append((statement, repr(parameters)))

    engine = db.state(app).engine
    event.listen(engine, "before_cursor_execute", spy)
    try:
        assert client.get("/api/v1/account", headers={"Authorization": f"Bearer {api_key}"}
                          ).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", spy)
    digest = hashlib.sha256(api_key.encode()).hexdigest()
    lookups = [s for s, params in statements if "api_keys" in s and "key_hash" in s.split("WHERE", 1)[-1]
               and digest in params]
    assert lookups, "the key is found through the hash column"
    assert not [s for s, params in statements if api_key in params], "the key itself never reaches SQL"
    with app.app_context():
        stored = db.session.scalar(select(ApiKey.key_hash))
    assert re.fullmatch(r"[0-9a-f]{64}", stored) and stored == digest


def test_k4_no_equality_on_secrets_in_the_code():
    """The key is compared only through its hash (grep-style check of the auth path)."""
    import inspect

    from runbase_web.api import auth as api_auth
    for module in (keys, api_auth):
        source = inspect.getsource(module)
        assert not re.search(r"(full_key|token)\s*==|==\s*(full_key|token)\b", source), module
    assert "key_hash == hash_key(full_key)" in inspect.getsource(keys.find_active_key)
