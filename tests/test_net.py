"""The guarded fetcher: SSRF corpus, DNS rebinding,
redirects, byte caps, slow bodies, and the worker downloading provider output URLs."""
from __future__ import annotations

import io
import ipaddress
import random
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import urllib3.response
from PIL import Image
from sqlalchemy import select

from runbase_web import net, recipe, state
from runbase_web.extensions import db
from runbase_web.models import LedgerEntry
from runbase_web.net import FetchError, Fetcher, check_url
from runbase_web.providers.base import Done, Output
from tests.conftest import wait_for_run


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 3), (200, 30, 90)).save(buffer, "PNG")
    return buffer.getvalue()


PNG = _png()
MiB = 1024 * 1024
BIG = 64 * MiB


# --- a local server with the answers the tests need -------------------------------------

class Handler(BaseHTTPRequestHandler):
    """Routes: /png /html /status?code= /redirect?to= /big[?cl=1] /drip /echo /headers."""

    def do_GET(self):
        route = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(route.query).items()}
        self.server.requests.append((route.path, dict(self.headers)))
        getattr(self, "route_" + route.path.strip("/").replace("-", "_"), self.route_missing)(query)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests.append((self.path, dict(self.headers), body))
        if self.path.startswith("/redirect"):
            return self.route_redirect({"to": "/png"})
        self._send(202, b"x" * (200 * 1024) if self.path == "/big" else b"ok " + body, "text/plain")

    def _send(self, status, body=b"", content_type="application/octet-stream", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def route_png(self, query):
        self._send(200, PNG, "image/png")

    def route_html(self, query):
        self._send(200, b"<!doctype html><html><body>Access denied</body></html>", "text/html")

    def route_missing(self, query):
        self._send(404, b"not found", "text/plain")

    def route_status(self, query):
        self._send(int(query["code"]), b"status", "text/plain")

    def route_redirect(self, query):
        self._send(302, headers=[("Location", query["to"])])

    def route_loop(self, query):
        self._send(302, headers=[("Location", "/loop")])

    def route_headers(self, query):
        self._send(200, repr(dict(self.headers)).encode(), "text/plain")

    def route_big(self, query):
        """64 MiB of zeros, with or without Content-Length; counts what it managed to send."""
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        if query.get("cl"):
            self.send_header("Content-Length", str(BIG))
        self.end_headers()  # HTTP/1.0 without a length: the body ends when the socket closes
        self._stream(BIG, 64 * 1024, 0)

    def route_drip(self, query):
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", "100")
        self.end_headers()
        self._stream(100, 1, 0.2)

    def _stream(self, total, chunk, pause):
        sent = 0
        try:
            while sent < total:
                self.wfile.write(b"\0" * chunk)
                sent += chunk
                time.sleep(pause)
        except OSError:
            pass  # the client hung up: exactly what the cap is for
        finally:
            self.server.streamed.append(sent)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    """A threaded HTTP server on 127.0.0.1 for the whole module."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.requests, httpd.streamed = [], []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_port}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


@pytest.fixture
def connects(monkeypatch):
    """Socket spy: every connect attempt (address) in this test, loopback or not."""
    seen = []
    for owner, name in ((socket.socket, "connect"), (socket.socket, "connect_ex")):
        original = getattr(owner, name)

        def spy(self, address, _original=original):
            seen.append(address[:2] if isinstance(address, tuple) else address)
            return _original(self, address)
        monkeypatch.setattr(owner, name, spy)
    original_create = socket.create_connection

    def create_connection(address, *args, **kwargs):
        seen.append(tuple(address[:2]))
        return original_create(address, *args, **kwargs)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    return seen


@pytest.fixture
def dns(monkeypatch):
    """Resolver stub: `dns.answers[name]` is a list of answers (lists of IPs) used in turn."""
    class Stub:
        answers: dict[str, list[list[str]]] = {}
        lookups: list[str] = []

    stub = Stub()
    stub.answers, stub.lookups = {}, []
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        stub.lookups.append(host)
        if host not in stub.answers:
            return real(host, port, *args, **kwargs)
        queue = stub.answers[host]
        ips = queue.pop(0) if len(queue) > 1 else queue[0]
        return [(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (ip, port, 0, 0) if ":" in ip else (ip, port)) for ip in ips]
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return stub


def fetch_error(call, *args, **kwargs) -> FetchError:
    with pytest.raises(FetchError) as caught:
        call(*args, **kwargs)
    return caught.value


# --- S8: refused before any connection ---------------------------------------------

S8_CORPUS = [
    "http://127.0.0.1/", "http://localhost/", "http://0.0.0.0/", "http://[::1]/",
    "http://169.254.169.254/latest/meta-data/", "http://metadata.google.internal/computeMetadata/v1/",
    "http://10.0.0.1/", "http://172.16.0.1/", "http://192.168.0.1/", "http://100.64.0.1/",
    "http://[fc00::1]/", "http://[::ffff:127.0.0.1]/", "http://2130706433/", "http://0177.0.0.1/",
    "file:///etc/passwd", "gopher://example.com/_SSRF", "ftp://example.com/a.png",
    "http://example.com:25/",
]
MORE_SPELLINGS = [
    "http://0x7f.1/", "http://127.1/", "http://0/", "http://017700000001/", "http://0x7f000001/",
    "https://LOCALHOST./", "http://app.localhost/", "http://[::]/", "http://[fe80::1]/",
    "http://[fe80::1%25eth0]/", "http://[::ffff:a9fe:a9fe]/", "http://[::ffff:10.0.0.1]/",
    "http://[64:ff9b::a9fe:a9fe]/", "http://[2002:a9fe:a9fe::1]/", "http://[::127.0.0.1]/",
    "http://[ff02::1]/", "http://224.0.0.1/", "http://255.255.255.255/", "http://198.18.0.1/",
    "http://169.254.169.254./", "http://service.internal/", "http://printer.local/",
    "http://intranet/", "http://user:secret@example.com/", "http://example.com@10.0.0.1/",
    "https://example.com:8443/", "http://256.1.1.1/", "http://1.2.3.4.5/", "http://08.0.0.1/",
    "http://example.com\\@127.0.0.1/", "http://exa mple.com/", "data:image/png;base64,AAAA",
    "javascript:alert(1)", "//example.com/a.png", "http:///a.png", "",
]


@pytest.mark.parametrize("url", S8_CORPUS + MORE_SPELLINGS)
def test_s8_corpus_is_refused_before_any_connection(url, connects, dns):
    assert fetch_error(check_url, url).code == "url_blocked"
    error = fetch_error(Fetcher().get, url)
    assert error.code == "url_blocked" and not error.retryable
    assert fetch_error(Fetcher().post, url, body=b"{}", headers={}).code == "url_blocked"
    assert connects == [] and dns.lookups == []


@pytest.mark.parametrize("url", [
    "http://10.0.0.1/", "http://169.254.169.254/", "http://192.168.0.1/", "http://[fc00::1]/",
    "http://[::ffff:10.0.0.1]/", "http://metadata.google.internal/", "http://100.64.0.1/",
    "http://[fe80::1]/", "http://0.0.0.0:8080/",
])
def test_allow_loopback_keeps_private_ranges_blocked(url, connects):
    assert fetch_error(Fetcher(allow_loopback=True).get, url).code == "url_blocked"
    assert connects == []


def test_public_urls_pass_the_static_check():
    # The counterpart of the corpus, so a check that refuses everything fails here.
    for url in ["https://example.com/a.png", "http://8.8.8.8/", "https://[2606:4700::1111]/x",
                "https://cdn.example.org:443/a?X-Amz-Signature=abc", "http://93.184.216.34:80/",
                "http://[::ffff:93.184.216.34]/", "http://[2002:5db8:d822::1]/", "http://0x5d.0xb8.0xd8.0x22/"]:
        check_url(url)


def _spellings(address: ipaddress._BaseAddress) -> list[str]:
    """The ways a URL can name one address."""
    if address.version == 6:
        return [f"[{address}]", f"[{address.exploded}]"]
    value = int(address)
    octets = str(address).split(".")
    return [str(address), str(value), hex(value), ".".join("0%o" % int(o) for o in octets),
            ".".join(hex(int(o)) for o in octets), f"[::ffff:{address}]",
            f"[64:ff9b::{address}]", f"[2002:{value >> 16:x}:{value & 0xFFFF:x}::1]"]


def test_sampled_private_addresses_are_all_refused():
    rng = random.Random(8)
    networks = ["0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
                "172.16.0.0/12", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4",
                "::1/128", "fc00::/7", "fe80::/10", "ff00::/8", "::ffff:0:0/96", "64:ff9b:1::/48"]
    checked = 0
    for network in map(ipaddress.ip_network, networks):
        for _ in range(40):
            address = network[rng.randrange(network.num_addresses)]
            if address in ipaddress.ip_network("::ffff:0:0/96") and net.address_blocked(
                    address.ipv4_mapped) is None:
                continue  # a mapped public address is public
            for host in _spellings(address):
                with pytest.raises(FetchError, match="."):
                    check_url(f"http://{host}/a.png")
                checked += 1
            loopback = net.effective_address(address).is_loopback
            assert net.address_blocked(address, allow_loopback=not loopback) is not None
    assert checked > 1000


# --- DNS: resolve once, check every answer, connect to what was checked ------------------------

def test_dns_rebinding_connects_only_to_the_checked_address(dns, connects):
    # First answer public, every later one internal: a second lookup would hit 127.0.0.1.
    dns.answers["rebind.example"] = [["93.184.216.34"], ["127.0.0.1"]]
    error = fetch_error(Fetcher().get, "http://rebind.example/img.png")
    # The network guard refuses the public address; what matters is where we tried to go.
    assert error.code == "fetch_failed" and error.retryable
    assert connects == [("93.184.216.34", 80)]
    assert dns.lookups == ["rebind.example"]


def test_rebinding_after_a_good_answer_is_never_followed(server, dns, connects):
    # Checked answer is the loopback fake; the "rebound" 10.0.0.1 is never looked up or used.
    dns.answers["images.example"] = [["127.0.0.1"], ["10.0.0.1"]]
    fetched = Fetcher(allow_loopback=True).get(f"http://images.example:{server.server_port}/headers")
    assert connects == [("127.0.0.1", server.server_port)]
    assert dns.lookups == ["images.example"]
    # The Host header keeps the name (virtual hosting and TLS SNI work as usual).
    assert f"'Host': 'images.example:{server.server_port}'" in fetched.content.decode()


@pytest.mark.parametrize("answers", [
    ["93.184.216.34", "10.0.0.1"], ["10.0.0.1", "93.184.216.34"], ["169.254.169.254"],
    ["::ffff:169.254.169.254"], ["fd00::1"], ["93.184.216.34", "::1"], ["64:ff9b::a00:1"],
])
def test_any_blocked_answer_refuses_the_name(answers, dns, connects):
    dns.answers["mixed.example"] = [answers]
    error = fetch_error(Fetcher().get, "https://mixed.example/a.png")
    assert error.code == "url_blocked" and "mixed.example" in error.message
    assert connects == []


def test_loopback_name_may_use_any_port_but_public_answers_may_not(server, dns, connects):
    dns.answers["odd-port.example"] = [["93.184.216.34"]]
    error = fetch_error(Fetcher(allow_loopback=True).get, "http://odd-port.example:8080/")
    assert error.code == "url_blocked" and "port 8080" in error.message
    assert connects == []


# --- redirects -------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["http://10.0.0.1/", "http://169.254.169.254/latest/meta-data/",
                                    "http://[::ffff:192.168.1.1]/", "gopher://127.0.0.1/"])
def test_redirect_to_an_internal_host_is_refused(server, connects, target):
    url = f"{server.url}/redirect?to={target}"
    error = fetch_error(Fetcher(allow_loopback=True).get, url)
    assert error.code == "url_blocked"
    assert connects == [("127.0.0.1", server.server_port)]


def test_redirects_are_followed_a_limited_number_of_times(server):
    fetched = Fetcher(allow_loopback=True).get(f"{server.url}/redirect?to=/png")
    assert fetched.content == PNG and fetched.url == f"{server.url}/png"
    before = len(server.requests)
    error = fetch_error(Fetcher(allow_loopback=True, max_redirects=3).get, f"{server.url}/loop")
    assert error.code == "fetch_failed" and "redirects" in error.message
    assert len(server.requests) - before == 4  # the first request and three redirects


def test_credentials_are_not_forwarded_to_another_host(server):
    target = f"http://localhost:{server.server_port}/headers"
    fetched = Fetcher(allow_loopback=True).get(f"{server.url}/redirect?to={target}",
                                               headers={"Authorization": "Bearer secret"})
    first, second = server.requests[-2:]
    assert first[1]["Authorization"] == "Bearer secret"
    assert "Authorization" not in second[1] and b"secret" not in fetched.content


# --- statuses, caps and timeouts ---------------------------------------------------------

@pytest.mark.parametrize("code, retryable", [(404, False), (403, False), (408, True), (429, True),
                                             (500, True), (503, True)])
def test_non_2xx_is_bad_status(server, code, retryable):
    error = fetch_error(Fetcher(allow_loopback=True).get, f"{server.url}/status?code={code}")
    assert (error.code, error.retryable, error.status) == ("bad_status", retryable, code)


@pytest.fixture
def bytes_read(monkeypatch):
    """Count the body bytes the client actually pulled off the socket."""
    counter = {"bytes": 0}
    original = urllib3.response.HTTPResponse.read1

    def read1(self, *args, **kwargs):
        data = original(self, *args, **kwargs)
        counter["bytes"] += len(data or b"")
        return data
    monkeypatch.setattr(urllib3.response.HTTPResponse, "read1", read1)
    return counter


@pytest.mark.parametrize("with_length", [True, False])
def test_oversized_body_is_aborted_at_the_cap(server, bytes_read, with_length):
    server.streamed.clear()
    started = time.monotonic()
    url = f"{server.url}/big" + ("?cl=1" if with_length else "")
    error = fetch_error(Fetcher(allow_loopback=True, max_bytes=MiB).get, url)
    assert error.code == "too_large" and not error.retryable
    assert time.monotonic() - started < 3
    if with_length:
        assert bytes_read["bytes"] == 0  # refused on the declared length alone
    else:
        assert MiB < bytes_read["bytes"] <= MiB + net.CHUNK_BYTES
    deadline = time.monotonic() + 5
    while not server.streamed and time.monotonic() < deadline:
        time.sleep(0.05)
    # The server noticed the hang-up long before its 64 MiB were out (socket buffers aside).
    assert server.streamed and server.streamed[0] < BIG / 2


def test_per_call_max_bytes_overrides_the_default(server):
    assert fetch_error(Fetcher(allow_loopback=True).get, f"{server.url}/png",
                       max_bytes=len(PNG) - 1).code == "too_large"
    assert Fetcher(allow_loopback=True, max_bytes=10).get(
        f"{server.url}/png", max_bytes=len(PNG)).content == PNG


def test_slow_drip_body_hits_the_deadline(server):
    started = time.monotonic()
    error = fetch_error(Fetcher(allow_loopback=True).get, f"{server.url}/drip", timeout=1)
    elapsed = time.monotonic() - started
    assert error.code == "timeout" and error.retryable
    # Each read gets a byte every 0.2 s for 20 s: only a deadline on the whole body ends it
    # this early (the upper bound leaves room for a loaded machine).
    assert 0.9 < elapsed < 5.0


# --- happy path and POST --------------------------------------------------------------------

def test_png_from_an_allowed_loopback_server(server):
    fetched = Fetcher(allow_loopback=True).get(f"{server.url}/png")
    assert fetched == net.Fetched(PNG, "image/png", f"{server.url}/png")
    path, headers = server.requests[-1]
    assert path == "/png" and headers["Accept-Encoding"] == "identity"
    assert headers["User-Agent"] == net.USER_AGENT


def test_loopback_server_is_refused_without_allow_loopback(server, connects):
    assert fetch_error(Fetcher().get, f"{server.url}/png").code == "url_blocked"
    assert fetch_error(Fetcher().get, "http://127.0.0.1:80/png").code == "url_blocked"
    assert connects == []


def test_post_sends_body_follows_no_redirect_and_caps_the_answer(server):
    fetcher = Fetcher(allow_loopback=True)
    status, body = fetcher.post(f"{server.url}/hook", body=b'{"id": 1}',
                                headers={"Content-Type": "application/json"})
    assert (status, body) == (202, b'ok {"id": 1}')
    assert server.requests[-1][2] == b'{"id": 1}'
    status, body = fetcher.post(f"{server.url}/redirect", body=b"{}", headers={})
    assert status == 302 and server.requests[-1][0] == "/redirect"
    status, body = fetcher.post(f"{server.url}/big", body=b"{}", headers={})
    assert status == 202 and len(body) == net.POST_RESPONSE_CAP


def test_unreachable_host_is_a_retryable_failure():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = fetch_error(Fetcher(allow_loopback=True).get, f"http://127.0.0.1:{port}/x")
    assert error.code == "fetch_failed" and error.retryable and "127.0.0.1" in error.message


# --- the worker downloads provider output URLs through the fetcher --------------------

class UrlAdapter:
    """Answers every run with one output URL: the prompt is the path on the test server."""

    def __init__(self, base: str):
        self.base = base

    def start(self, job):
        return Done([Output("", url=self.base + job.input["prompt"])])

    def poll(self, job):
        raise AssertionError("sync adapter is never polled")

    def cancel(self, job):
        pass


@pytest.fixture
def allow_loopback(app_config):
    app_config["FETCH_ALLOW_LOOPBACK"] = True


def _run(client, auth, prompt: str) -> str:
    response = client.post("/api/v1/runs", json={"model": "local/test", "input": {"prompt": prompt}},
                           headers=auth)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def _ledger(app, run_id):
    with app.app_context():
        return sorted((e.kind, e.amount_micros) for e in db.session.scalars(
            select(LedgerEntry).where(LedgerEntry.run_id == run_id)))


def test_worker_stores_fetched_outputs_and_refunds_bad_ones(allow_loopback, server, app, client,
                                                           auth, worker, monkeypatch):
    monkeypatch.setattr("runbase_web.worker.execute.adapter_for",
                        lambda spec, context: UrlAdapter(server.url))
    ok, missing, html = (_run(client, auth, path) for path in ("/png", "/missing", "/html"))
    done = wait_for_run(app, ok)
    assert done.status == "succeeded", done.error
    with client.get(done.output_urls[0], headers=auth) as response:
        assert response.status_code == 200 and response.mimetype == "image/png"
        # Stored as fetched, plus the run recipe chunk the worker adds to PNGs.
        assert recipe.strip_png_recipe(response.data) == PNG
    for run_id, words in ((missing, "HTTP 404"), (html, "no image or video")):
        failed = wait_for_run(app, run_id)
        assert (failed.status, failed.error_code) == ("failed", "output_unavailable")
        assert words in failed.error and "/missing" not in failed.error
        assert _ledger(app, run_id) == [("charge", -100), ("refund", 100)]


def test_worker_refuses_loopback_outputs_by_default(server, app, client, auth, worker, monkeypatch):
    monkeypatch.setattr("runbase_web.worker.execute.adapter_for",
                        lambda spec, context: UrlAdapter(server.url))
    before = len(server.requests)
    failed = wait_for_run(app, _run(client, auth, "/png"))
    assert (failed.status, failed.error_code) == ("failed", "output_unavailable")
    assert "not allowed" in failed.error
    assert _ledger(app, failed.id)[-1] == ("refund", 100)
    assert len(server.requests) == before


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_worker_fetcher_is_one_per_app_with_the_app_s_guard(app):
    """Every run shares the app's fetcher (its pool keeps checked, pinned connections),
    built with the app's loopback rule and size cap, and it still refuses loopback."""
    app.config["FETCH_MAX_BYTES"] = 12345
    shared = state.fetcher(app)
    made = []
    threads = [threading.Thread(target=lambda: made.append(state.fetcher(app))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(fetcher is shared for fetcher in made)
    assert shared.max_bytes == 12345 and shared.allow_loopback is False
    with pytest.raises(FetchError) as refused:
        shared.get("http://127.0.0.1:9/secret")
    assert refused.value.code == "url_blocked"
