"""A real S3 HTTP API for tests: moto's standalone server (`python -m moto.server`) as a
subprocess on 127.0.0.1, and the AWS environment that points boto3 at it.

Outside pytest (a script, a multi-process test's own set-up):

    url, stop = start_s3_server()
    env = {**os.environ, **aws_env(url)}           # for the processes that use it
    bucket = create_bucket(url)                     # a fresh, empty bucket
    env["RUNBASE_STORAGE_URL"] = f"s3://{bucket}/outputs"
    ...
    stop()

In pytest, import the fixtures into a conftest.py (`from tests.support.s3_server import
s3_server, s3_env, s3_bucket, s3_storage_url`):

- `s3_server` (session): one server per test process; yields its endpoint URL.
- `s3_env`: this test's environment pointed at it (monkeypatched, undone afterwards);
  yields the endpoint URL.
- `s3_bucket`: a fresh bucket on it, for this test only; yields its name.
- `s3_storage_url`: `s3://<fresh bucket>/outputs`. An app built with
  `{"STORAGE_URL": s3_storage_url}` (e.g. returned by an `app_config` override, as in
  tests/storage/conftest.py) keeps its files there, checked at start like any S3 app
  (one probe PUT + DELETE, ~10 ms here; apps on local disk pay nothing).

A server of a test's own (to stop it, or to make it check credentials with
`enforce_credentials`): `S3Server().start()` ... `.stop()`, with `point_boto3_at`.

boto3 never goes looking elsewhere: credentials and region are set explicitly, the
instance-metadata service is off, and no ~/.aws files are read (the test network guard
would refuse anything but loopback anyway).
"""
from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Mapping

import pytest

START_TIMEOUT = 30  # seconds to wait for the server to answer HTTP
REGION = "us-east-1"
#: The key prefix s3_storage_url puts files under.
PREFIX = "outputs"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def aws_env(endpoint_url: str) -> dict[str, str]:
    """The standard AWS variables that point boto3 (in this process or another) at
    `endpoint_url`, with dummy credentials, and nowhere else."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        # No profile, session token or config/credentials file of the machine's user.
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


#: Variables that would make boto3 use something other than aws_env's settings.
UNSET = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
         "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
         "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_ENDPOINT_URL_S3")


def client(endpoint_url: str, **credentials):
    """A boto3 S3 client for the test's own set-up and checks (not the app's)."""
    import boto3

    settings = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing",
                **credentials}
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url,
                                          region_name=REGION, **settings)


def create_bucket(endpoint_url: str, name: str | None = None) -> str:
    """Create a bucket (a fresh random name unless given); returns its name."""
    name = name or f"runbase-test-{secrets.token_hex(6)}"
    client(endpoint_url).create_bucket(Bucket=name)
    return name


class S3Server:
    """`python -m moto.server` on 127.0.0.1 on a free port, its log in a temp directory."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.port = _free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="runbase-moto-"))
        self.env = dict(env or {})
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The endpoint URL (AWS_ENDPOINT_URL)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "S3Server":
        """Start the server and wait until it answers an S3 request."""
        log = open(self.workdir / "moto.log", "wb")
        env = {**os.environ, **self.env}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                # Any HTTP answer will do: the server is up and serving S3.
                with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=2):
                    return self
            except urllib.error.HTTPError:
                return self
            except OSError:
                time.sleep(0.05)
        log_text = (self.workdir / "moto.log").read_text(errors="replace")
        self.stop()
        raise RuntimeError("moto's S3 server did not start:\n" + log_text)

    def stop(self) -> None:
        """Stop the server (its buckets go with it) and remove its directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_s3_server(env: Mapping[str, str] | None = None) -> tuple[str, Callable[[], None]]:
    """Start a server (extra environment for it in `env`); returns (endpoint URL, stop)."""
    server = S3Server(env).start()
    return server.url, server.stop


def point_boto3_at(monkeypatch, endpoint_url: str) -> None:
    """Set this process's AWS variables to `endpoint_url` for one test (undone after it)."""
    for name in UNSET:
        monkeypatch.delenv(name, raising=False)
    for name, value in aws_env(endpoint_url).items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="session")
def s3_server():
    """One moto S3 server for the test process; yields its endpoint URL."""
    url, stop = start_s3_server()
    yield url
    stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """This test's AWS variables point at the session's S3 server; yields its URL."""
    point_boto3_at(monkeypatch, s3_server)
    return s3_server


@pytest.fixture
def s3_bucket(s3_env):
    """A fresh, empty bucket on the session's S3 server; yields its name."""
    return create_bucket(s3_env)


@pytest.fixture
def s3_storage_url(s3_bucket):
    """RUNBASE_STORAGE_URL of a fresh bucket (files under outputs/): an app built with
    {"STORAGE_URL": s3_storage_url} keeps its files there."""
    return f"s3://{s3_bucket}/{PREFIX}"


def iam_client(endpoint_url: str):
    """A boto3 IAM client on the same server (users, policies and keys for tests of
    credentials that may not do everything)."""
    import boto3

    return boto3.session.Session().client(
        "iam", endpoint_url=endpoint_url, region_name=REGION,
        aws_access_key_id="testing", aws_secret_access_key="testing")


def enforce_credentials(endpoint_url: str) -> None:
    """From now on the server checks every request's credentials against its IAM users and
    their policies (moto checks none by default). For a server of the test's own: the
    session's server must stay open to anyone."""
    # The count of requests still let through unchecked; a form's Content-Type (urllib's
    # default) would hide the body from moto.
    request = urllib.request.Request(f"{endpoint_url}/moto-api/reset-auth", data=b"0",
                                     method="POST", headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()
