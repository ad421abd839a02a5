"""RUNBASE_ALLOWED_HOSTS: absolute URLs follow the request's Host when RUNBASE_PUBLIC_URL is
unset, so a Host the operator did not allow is refused (400) before any view builds a URL
from it; a cache in front of the server can then never keep an answer naming an attacker's
host. Production start-up (gunicorn) warns when neither setting is given."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runbase_web import create_app, hosts
from runbase_web.config import ConfigError, load_settings

REPO = Path(__file__).resolve().parents[2]
EVIL = "http://attacker.invalid"


def refused_everywhere(client, base_url: str) -> None:
    """The API answers the envelope, pages the error page, unknown API paths too."""
    for path in ("/api/v1/openapi.json", "/api/v1/models", "/api/v1/runs", "/api/v1/nothing"):
        answer = client.get(path, base_url=base_url)
        assert answer.status_code == 400, path
        assert answer.get_json()["error"]["code"] == "host_not_allowed", path
        assert "attacker" not in answer.text
    page = client.get("/docs", base_url=base_url)
    assert page.status_code == 400 and page.mimetype == "text/html"
    assert "RUNBASE_ALLOWED_HOSTS" in page.text and "attacker" not in page.text


def test_by_default_only_loopback_names_are_answered(client):
    refused_everywhere(client, EVIL)
    for base in ("http://localhost", "http://127.0.0.1:5000", "http://[::1]:8080",
                 "http://LOCALHOST.:5000"):
        answer = client.get("/api/v1/openapi.json", base_url=base)
        assert answer.status_code == 200, base
        assert answer.get_json()["servers"] == [{"url": base.lower() + "/api/v1"}]


def test_a_request_without_a_usable_host_is_refused(client):
    # Werkzeug reads a Host with invalid characters as "" (no host): never a URL base.
    answer = client.get("/api/v1/models", headers={"Host": "a b"})
    assert answer.status_code == 400 and answer.get_json()["error"]["code"] == "host_not_allowed"


@pytest.mark.parametrize("app_config", [{"PUBLIC_URL": "https://gen.example.com"}])
def test_with_a_public_url_its_host_is_answered_too(client):
    refused_everywhere(client, EVIL)
    for base in ("https://gen.example.com", "http://localhost"):
        answer = client.get("/api/v1/openapi.json", base_url=base)
        assert answer.status_code == 200, base
        assert answer.get_json()["servers"] == [{"url": "https://gen.example.com/api/v1"}]


@pytest.mark.parametrize("app_config", [{"ALLOWED_HOSTS": ("runbase.lan", ".example.org")}])
def test_the_operators_list_replaces_the_defaults(client):
    refused_everywhere(client, EVIL)
    for base, status in [("http://runbase.lan:8080", 200), ("http://example.org", 200),
                         ("http://a.b.example.org", 200), ("http://badexample.org", 400),
                         ("http://localhost", 400)]:
        assert client.get("/api/v1/models", base_url=base).status_code == status, base
    urls = client.get("/api/v1/openapi.json", base_url="http://runbase.lan:8080").get_json()
    assert urls["servers"] == [{"url": "http://runbase.lan:8080/api/v1"}]


@pytest.mark.parametrize("app_config", [{"ALLOWED_HOSTS": ("*",)}])
def test_star_answers_any_host(client):
    assert client.get("/api/v1/models", base_url=EVIL).status_code == 200


def test_host_names_are_read_like_a_browser_sends_them():
    assert hosts.host_name("Example.COM:8080") == "example.com"
    assert hosts.host_name("[::1]:5000") == "[::1]"
    assert hosts.host_name("[::1") == ""
    assert hosts.host_name("localhost.") == "localhost"
    assert hosts.url_host("https://[2001:db8::1]:8443/x") == "[2001:db8::1]"
    assert hosts.effective_hosts(None, "https://Gen.Example.com/base") == (
        "gen.example.com", "localhost", "127.0.0.1", "[::1]")
    assert not hosts.is_allowed("[2001:db8::1]", hosts.LOOPBACK_NAMES)
    assert not hosts.is_allowed("", ("*",))


@pytest.mark.parametrize("value", ["https://x.example", "x.example:443", "ü.example", "::1", "."])
def test_the_setting_refuses_what_could_never_match(tmp_path, value):
    with pytest.raises(ConfigError, match="RUNBASE_ALLOWED_HOSTS"):
        load_settings({"DATA_DIR": str(tmp_path)}, env={"RUNBASE_ALLOWED_HOSTS": value})


def test_the_setting_is_a_comma_separated_list(tmp_path):
    settings = load_settings({"DATA_DIR": str(tmp_path)},
                             env={"RUNBASE_ALLOWED_HOSTS": " A.example , [::1],.b.example "})
    assert settings["ALLOWED_HOSTS"] == ("a.example", "[::1]", ".b.example")


@pytest.mark.parametrize("env, warned", [
    ({}, True),
    ({"RUNBASE_PUBLIC_URL": "https://gen.example.com"}, False),
    ({"RUNBASE_ALLOWED_HOSTS": "gen.example.com"}, False),
])
def test_gunicorn_start_up_warns_when_neither_is_set(tmp_path, monkeypatch, caplog, env, warned):
    for name in ("RUNBASE_PUBLIC_URL", "RUNBASE_ALLOWED_HOSTS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SERVER_SOFTWARE", "gunicorn/27.0.1")
    with caplog.at_level(logging.WARNING):
        create_app({"DATA_DIR": str(tmp_path)})
    assert ("neither RUNBASE_PUBLIC_URL nor RUNBASE_ALLOWED_HOSTS" in caplog.text) == warned
    caplog.clear()
    monkeypatch.delenv("SERVER_SOFTWARE")
    with caplog.at_level(logging.WARNING):
        create_app({"DATA_DIR": str(tmp_path)})  # python app.py, flask commands: no warning
    assert "RUNBASE_ALLOWED_HOSTS" not in caplog.text


def test_a_real_gunicorn_prints_the_warning(tmp_path):
    env = {"RUNBASE_DATA_DIR": str(tmp_path), "PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--bind", "127.0.0.1:0", "--workers", "1", "app:app"],
        cwd=REPO, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    seen = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = server.stderr.readline()
            if not line:
                break
            seen.append(line)
            if "RUNBASE_ALLOWED_HOSTS=" in line:
                break
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        server.stderr.close()
    assert any("neither RUNBASE_PUBLIC_URL nor RUNBASE_ALLOWED_HOSTS is set" in line
               for line in seen), "".join(seen)
