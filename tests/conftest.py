"""Shared fixtures: a real database per test (SQLite and PostgreSQL), the app,
users and keys, an embedded worker, a live server and a real browser.

Every test that builds the app ends with the ledger invariants checked.
"""
from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from sqlalchemy import create_engine, text
from werkzeug.serving import make_server

from runbase_web import create_app
from runbase_web.cli import upgrade_database
from runbase_web.extensions import db
from runbase_web.models import Base, Run
from runbase_web.services import accounts, keys, ledger
from runbase_web.state import WORKER
from runbase_web.worker import Worker
from tests.support import browser as browser_support
from tests.support.netguard import block_non_loopback
from tests.support.postgres import PostgresServer

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Any connection outside loopback fails the test that makes it."""
    block_non_loopback(monkeypatch)


@pytest.fixture(scope="session")
def pg_server():
    """One throwaway PostgreSQL server for the whole run."""
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_database(pg_server):
    """A migrated PostgreSQL database, emptied before each test that uses it."""
    url = pg_server.create_database("runbase_test")
    app = create_app({"DATABASE_URL": url, "DATA_DIR": pg_server.datadir.parent / "appdata"})
    upgrade_database(app)
    db.state(app).dispose()
    return url


def _truncate(url: str) -> None:
    engine = create_engine(url)
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    """A migrated SQLite database, made once; each test gets a copy (migrating per test
    would cost more than most tests do)."""
    directory = tmp_path_factory.mktemp("sqlite-template")
    path = directory / "runbase.db"
    app = create_app({"DATABASE_URL": f"sqlite:///{path}", "DATA_DIR": str(directory / "data")})
    upgrade_database(app)
    db.state(app).dispose()
    return path


def _copy_sqlite(source, target) -> None:
    """Copy a SQLite database through its backup API (consistent even with a WAL)."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()


@pytest.fixture(params=BACKENDS)
def database_url(request, tmp_path):
    """The database for one test: a fresh migrated SQLite file, or the emptied PostgreSQL one."""
    if request.param == "sqlite":
        path = tmp_path / "runbase.db"
        _copy_sqlite(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("pg_database")
    _truncate(url)
    return url


@pytest.fixture
def app_config():
    """Per-test settings; a test overrides by requesting this fixture and updating it."""
    return {}


@pytest.fixture
def app(database_url, tmp_path, app_config):
    """The app on a migrated database; checks the ledger invariants when the test ends."""
    settings = {"DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": database_url,
                "TESTING": True, "WTF_CSRF_ENABLED": False, "PROVIDER_ENV": {},
                "SIGNUP_CREDIT_MICROS": 1_000_000, "PUBLIC_URL": "", "CATALOG_PATH": None,
                "LEASE_SECONDS": 30, "WORKER_POLL_SECONDS": 0.2,
                "RATE_LIMIT": None, "TRUSTED_PROXIES": 0, "FETCH_ALLOW_LOOPBACK": False}
    settings.update(app_config)
    application = create_app(settings)
    upgrade_database(application)
    yield application
    worker = application.extensions.pop(WORKER, None)
    if worker is not None:
        worker.stop(wait=True)
    with application.app_context():
        problems = ledger.invariant_violations(db.session)
    db.state(application).dispose()
    assert problems == [], "ledger invariants (M6) broken:\n" + "\n".join(problems)


@pytest.fixture
def client(app):
    """Flask's test client."""
    return app.test_client()


@pytest.fixture
def make_user(app):
    """Factory: an account with a balance in micro-USD (default $1.00)."""
    counter = iter(range(1, 10_000))

    def make(email: str | None = None, *, credit_micros: int = 1_000_000, password="password123"):
        with app.app_context():
            user = accounts.create_user(db.session, email or f"user{next(counter)}@example.com",
                                        password, credit_micros=credit_micros)
            db.session.commit()
            return user
    return make


@pytest.fixture
def make_key(app):
    """Factory: a new API key (the full `sk-` string) for a user."""
    def make(user, name: str = "test key") -> str:
        with app.app_context():
            _key, full_key = keys.create_key(db.session, user.id, name)
            db.session.commit()
            return full_key
    return make


@pytest.fixture
def user(make_user):
    """One account with $1.00."""
    return make_user("alice@example.com")


@pytest.fixture
def api_key(user, make_key):
    """A key of `user`."""
    return make_key(user)


@pytest.fixture
def auth(api_key):
    """Headers that authenticate as `user`."""
    return {"Authorization": f"Bearer {api_key}"}


@pytest.fixture
def signed_in(client, user):
    """The test client, signed in as `user` (alice, $1.00) through the real form."""
    from tests.web import sign_in
    sign_in(client, user.email)
    return client


@pytest.fixture
def worker(app):
    """An embedded worker on the test app, woken on create like `python app.py`'s."""
    running = Worker(app, threads=4).start()
    app.extensions[WORKER] = running
    return running


def wait_for_run(app, run_id: str, *, timeout: float = 20.0, until=("succeeded", "failed")) -> Run:
    """Poll the database until the run reaches one of the `until` statuses."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.app_context():
            run = db.session.get(Run, run_id)
            if run is not None and run.status in until:
                return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not reach {until} within {timeout}s")


@pytest.fixture
def http_server(app):
    """The app served over real HTTP on 127.0.0.1 (threaded); yields the base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture
def live_server(http_server, worker):
    """The app over real HTTP with its embedded worker running; yields the base URL."""
    return http_server


@pytest.fixture(scope="session")
def chromium():
    """Debian's Chromium, headless, driven by Playwright; one per test session."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = browser_support.launch(playwright)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium, live_server):
    """A fresh browser context and page (no cookies) for one test. With reduced motion the
    stylesheet turns transitions off, so a check never samples a colour mid-transition
    (e.g. axe right after switching to dark mode)."""
    context = chromium.new_context(base_url=live_server, reduced_motion="reduce")
    context.set_default_timeout(15_000)
    tab = context.new_page()
    yield tab
    context.close()


@pytest.fixture
def problems(page):
    """What the page reported while the test ran: Content-Security-Policy violations and
    console errors are collected as they happen; CSP violations and uncaught page errors
    fail the test (the CSP forbids inline script and style, so anything that slipped in
    shows up here)."""
    seen: list[str] = []
    page.on("console", lambda msg: seen.append(f"console {msg.type}: {msg.text}")
            if "Content Security Policy" in msg.text or msg.type == "error" else None)
    page.on("pageerror", lambda error: seen.append(f"pageerror: {error}"))
    yield seen
    assert [p for p in seen if "Content Security Policy" in p or p.startswith("pageerror")] == []


@pytest.fixture(scope="module")
def private_pg():
    """A PostgreSQL server of the module's own, for tests that stop or pause it (the
    suite's shared server is never touched)."""
    server = PostgresServer().start()
    yield server
    server.stop()
