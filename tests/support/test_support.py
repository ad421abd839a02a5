"""Tests for the test infrastructure itself: PostgreSQL, network guard, browser."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import requests
import sqlalchemy as sa

from tests.support import browser, netguard, postgres

CONCURRENT_CONNECTIONS = 150


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Run every test here under the guard, as the project conftest will."""
    netguard.block_non_loopback(monkeypatch)


@pytest.fixture(scope="module")
def pg():
    """One throwaway server for this module's PostgreSQL tests."""
    with postgres.PostgresServer() as server:
        yield server


def _database_exists(pg, name: str) -> bool:
    with psycopg.connect(pg.conninfo("postgres")) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


# -- PostgreSQL ---------------------------------------------------------------

@pytest.mark.postgres
def test_postgres_binaries_available():
    assert postgres.available()


@pytest.mark.postgres
def test_postgres_url_points_at_loopback(pg):
    assert pg.url("app") == f"postgresql+psycopg://runbase@127.0.0.1:{pg.port}/app"
    with pytest.raises(ValueError):
        pg.url("bad name; DROP")


@pytest.mark.postgres
def test_postgres_select_write_and_drop(pg):
    url = pg.create_database("support_smoke")
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
            conn.execute(sa.text("CREATE TABLE notes (id serial PRIMARY KEY, body text)"))
            conn.execute(sa.text("INSERT INTO notes (body) VALUES (:b)"), {"b": "héllo"})
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT body FROM notes")).scalar_one() == "héllo"
    finally:
        engine.dispose()
    pg.drop_database("support_smoke")
    assert not _database_exists(pg, "support_smoke")


@pytest.mark.postgres
def test_postgres_drop_with_open_connection(pg):
    pg.create_database("support_busy")
    with psycopg.connect(pg.conninfo("support_busy")) as held:
        held.execute("SELECT 1")
        held.commit()
        pg.drop_database("support_busy")  # must not wait for `held`
        assert not _database_exists(pg, "support_busy")
        with pytest.raises(psycopg.OperationalError):
            held.execute("SELECT 1")  # the server ended this session


@pytest.mark.postgres
def test_postgres_start_failure_reports_log_tail(monkeypatch):
    bad = postgres._SETTINGS + "shared_buffers = 'plenty'\n"
    monkeypatch.setattr(postgres, "_SETTINGS", bad)
    server = postgres.PostgresServer()
    with pytest.raises(postgres.PostgresStartError, match="server log tail(.|\n)*shared_buffers"):
        server.start()
    assert server.tempdir is None  # cleaned up after the failure


@pytest.mark.postgres
def test_postgres_many_concurrent_connections(pg):
    pg.create_database("support_many")
    conninfo = pg.conninfo("support_many")
    # Every worker holds its connection until all have one (plus the main thread).
    all_open = threading.Barrier(CONCURRENT_CONNECTIONS + 1, timeout=120)
    counted = threading.Event()

    def hold_connection(_):
        with psycopg.connect(conninfo, connect_timeout=30) as conn:
            conn.execute("SELECT 1")
            all_open.wait()
            counted.wait(timeout=120)

    with ThreadPoolExecutor(max_workers=CONCURRENT_CONNECTIONS) as pool:
        futures = [pool.submit(hold_connection, i) for i in range(CONCURRENT_CONNECTIONS)]
        try:
            all_open.wait()
            with psycopg.connect(pg.conninfo("postgres")) as admin:
                open_now = admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                    ("support_many",)).fetchone()[0]
        finally:
            counted.set()
        for future in futures:
            future.result()
    assert open_now == CONCURRENT_CONNECTIONS
    pg.drop_database("support_many")


# -- network guard ------------------------------------------------------------

@pytest.mark.parametrize("kind, address", [
    (socket.SOCK_STREAM, ("10.1.2.3", 80)),
    (socket.SOCK_DGRAM, ("8.8.8.8", 53)),
])
def test_netguard_refuses_remote_connect(kind, address):
    with socket.socket(socket.AF_INET, kind) as sock:
        started = time.monotonic()
        with pytest.raises(OSError, match="test tried to reach the network: "):
            sock.connect(address)
        with pytest.raises(OSError, match="tried to reach the network"):
            sock.connect_ex(address)
        assert time.monotonic() - started < 1.0


def test_netguard_refuses_create_connection_and_lookup():
    with pytest.raises(OSError, match="10.1.2.3:80"):
        socket.create_connection(("10.1.2.3", 80), timeout=5)
    with pytest.raises(OSError, match="example.com"):
        socket.getaddrinfo("example.com", 80)
    with pytest.raises(OSError, match="example.com"):
        socket.gethostbyname("example.com")


def test_netguard_refuses_udp_sendto():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        with pytest.raises(OSError, match="8.8.8.8:53"):
            sock.sendto(b"x", ("8.8.8.8", 53))


def test_netguard_requests_fails():
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ConnectionError, match="tried to reach the network"):
        requests.get("http://example.com", timeout=5)
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_netguard_allows_loopback_tcp(host):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        with socket.create_connection((host, port), timeout=5) as client:
            peer, _ = server.accept()
            with peer:
                client.sendall(b"ping")
                assert peer.recv(4) == b"ping"


def test_netguard_allows_unix_sockets(tmp_path):
    path = str(tmp_path / "s.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(1)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(path)
            peer, _ = server.accept()
            peer.close()


def test_netguard_address_rules():
    assert netguard.is_loopback_host("127.8.9.10")
    assert netguard.is_loopback_host("::1")
    assert netguard.is_loopback_host("::ffff:127.0.0.1")
    assert netguard.is_loopback_host(b"localhost")
    assert not netguard.is_loopback_host("10.0.0.1")
    assert not netguard.is_loopback_host("localhost.example.com")
    socket.getaddrinfo("8.8.8.8", 53)  # a literal needs no DNS, so lookup is allowed


# -- browser ------------------------------------------------------------------

class _Page(http.server.BaseHTTPRequestHandler):
    """Serves one fixed HTML page."""

    def do_GET(self):
        body = b"<html><head><title>Runbase test page</title></head><body>ok</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass  # keep test output quiet


@pytest.fixture
def local_site():
    """A tiny HTTP server on 127.0.0.1; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.mark.browser
def test_browser_reads_titles(local_site, chromium):
    # The session's `chromium` fixture is browser.launch(); one Playwright per process,
    # since a second sync_playwright() inside the first one's loop is refused.
    context = chromium.new_context()
    try:
        page = context.new_page()
        page.goto("data:text/html,<title>From data URL</title>")
        assert page.title() == "From data URL"
        page.goto(local_site)
        assert page.title() == "Runbase test page"
    finally:
        context.close()
