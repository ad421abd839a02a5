"""S3 storage is checked when the app is built (a missing, unwritable or unreachable
bucket stops the start with the bucket and the reason) and by /readyz, which answers 503
when the S3 server goes away, in safe words."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from runbase_web import create_app
from runbase_web.storage import StorageUnavailable
from tests.support import s3_server
from tests.support.s3_server import S3Server, create_bucket, point_boto3_at

REPO = Path(__file__).resolve().parents[2]


def build(tmp_path, storage_url: str):
    return create_app({"DATA_DIR": str(tmp_path / "data"), "STORAGE_URL": storage_url,
                       "PROVIDER_ENV": {}, "TESTING": True})


def test_a_missing_bucket_stops_the_start(tmp_path, s3_env):
    with pytest.raises(StorageUnavailable) as stopped:
        build(tmp_path, "s3://no-such-bucket/outputs")
    assert str(stopped.value) == ("RUNBASE_STORAGE_URL=s3://no-such-bucket/outputs/: bucket "
                                  "'no-such-bucket' does not exist (NoSuchBucket)")


def test_an_unreachable_endpoint_stops_the_start(tmp_path, monkeypatch):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    point_boto3_at(monkeypatch, f"http://127.0.0.1:{port}")
    with pytest.raises(StorageUnavailable, match=r"bucket 'some-bucket' cannot be reached "
                                                 r"\(EndpointConnectionError"):
        build(tmp_path, "s3://some-bucket")


@pytest.fixture
def private_s3(monkeypatch):
    """An S3 server of this test's own (it is stopped, or made to check credentials)."""
    server = S3Server().start()
    point_boto3_at(monkeypatch, server.url)
    yield server
    server.stop()


def test_a_bucket_that_cannot_be_written_stops_the_start(tmp_path, private_s3, monkeypatch):
    # A user who may read the bucket but not write to it, on a server that checks
    # credentials and IAM policies (moto's: after /moto-api/reset-auth).
    bucket = create_bucket(private_s3.url)
    iam = s3_server.iam_client(private_s3.url)
    iam.create_user(UserName="reader")
    iam.put_user_policy(UserName="reader", PolicyName="read-only", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*",
                                                "Action": ["s3:GetObject", "s3:ListBucket"]}]}))
    key = iam.create_access_key(UserName="reader")["AccessKey"]
    s3_server.enforce_credentials(private_s3.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    with pytest.raises(StorageUnavailable) as stopped:
        build(tmp_path, f"s3://{bucket}/outputs")
    message = str(stopped.value)
    assert message.startswith(f"RUNBASE_STORAGE_URL=s3://{bucket}/outputs/: bucket {bucket!r} "
                              "cannot be written (AccessDenied: ")
    assert key["SecretAccessKey"] not in message


def test_the_cli_says_why_it_cannot_start(tmp_path, s3_env):
    env = {"RUNBASE_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           **s3_server.aws_env(s3_env), "RUNBASE_STORAGE_URL": "s3://no-such-bucket"}
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        "runbase_web.storage.base.StorageUnavailable: RUNBASE_STORAGE_URL=s3://no-such-bucket/: "
        "bucket 'no-such-bucket' does not exist (NoSuchBucket)")


def test_readyz_checks_the_bucket(app, client, s3_env, s3_bucket):
    answer = client.get("/readyz")
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["checks"]["storage"]["ok"] is True
    # The probe object is gone again.
    listed = s3_server.client(s3_env).list_objects_v2(Bucket=s3_bucket)
    assert listed.get("KeyCount", 0) == 0


class TestWhenTheServerStops:
    @pytest.fixture
    def app_config(self, private_s3):
        return {"STORAGE_URL": f"s3://{create_bucket(private_s3.url)}/outputs"}

    def test_readyz_is_503_in_safe_words(self, app, client, private_s3):
        assert client.get("/readyz").status_code == 200
        private_s3.stop()
        answer = client.get("/readyz")
        body = answer.get_json()
        assert answer.status_code == 503 and body["status"] == "unavailable", body
        storage = body["checks"]["storage"]
        assert storage["ok"] is False
        assert storage["detail"] in ("unreachable (EndpointConnectionError)", "timed out"), storage
        assert body["checks"]["database"]["ok"] is True
        text = answer.get_data(as_text=True)
        assert "127.0.0.1" not in text and str(private_s3.port) not in text
        assert "testing" not in text  # the credentials

    def test_readyz_names_a_bucket_error_by_its_class(self, app, client, private_s3):
        s3_server.client(private_s3.url).delete_bucket(
            Bucket=app.config["STORAGE_URL"].split("/")[2])
        answer = client.get("/readyz")
        assert answer.status_code == 503
        assert answer.get_json()["checks"]["storage"]["detail"] == "not writable (NoSuchBucket)"
        assert app.config["STORAGE_URL"].split("/")[2] not in answer.get_data(as_text=True)
