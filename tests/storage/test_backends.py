"""Both storage backends behind the one interface, without an app: the round trip, ranges,
missing files, unsafe names; and what only S3 adds (object keys, Content-Type, presigned
links)."""
from __future__ import annotations

import secrets
import subprocess
import sys
import urllib.request

import pytest

from runbase_web.storage import LocalStorage, S3Storage, open_storage
from tests.support import s3_server
from tests.support.s3_server import PREFIX

DATA = bytes(range(256)) * 1000  # 256 000 bytes: several chunks


def new_name(extension: str = "png") -> str:
    return f"{secrets.token_urlsafe(24)}.{extension}"


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStorage(tmp_path / "files")
    return S3Storage(request.getfixturevalue("s3_bucket"), PREFIX)


def test_save_read_size_stream_delete(store):
    name = new_name()
    assert store.read(name) is None and store.size(name) is None and store.stream(name) is None
    store.save(name, DATA)
    assert store.read(name) == DATA and store.size(name) == len(DATA)
    chunks = store.stream(name)
    assert b"".join(chunks) == DATA
    chunks.close()
    for start, stop in [(0, 1), (1000, 70_000), (255_999, 256_000), (100, None)]:
        part = store.stream(name, start, stop)
        assert b"".join(part) == DATA[start:stop], (start, stop)
        part.close()
    store.delete(name)
    assert store.read(name) is None and store.size(name) is None
    store.delete(name)  # again: no error


def test_empty_files(store):
    name = new_name("mp4")
    store.save(name, b"")
    assert store.read(name) == b"" and store.size(name) == 0
    store.delete(name)


def test_unsafe_names_are_refused(store):
    for name in ["../secret_key", "short.png", "a/b" + "c" * 20 + ".png", ""]:
        with pytest.raises(ValueError):
            store.save(name, b"x")
        with pytest.raises(ValueError):
            store.delete(name)
        assert store.read(name) is None and store.size(name) is None


def test_s3_objects_have_their_key_content_type_and_cache_control(s3_env, s3_bucket):
    store = S3Storage(s3_bucket, f"/{PREFIX}/")
    names = {new_name("png"): "image/png", new_name("mp4"): "video/mp4",
             new_name("webm"): "video/webm", "readyz-0123456789abcdef.probe": "application/octet-stream"}
    for name in names:
        store.save(name, b"bytes")
    client = s3_server.client(s3_env)
    listed = client.list_objects_v2(Bucket=s3_bucket)["Contents"]
    assert sorted(item["Key"] for item in listed) == sorted(f"{PREFIX}/{name}" for name in names)
    for name, content_type in names.items():
        head = client.head_object(Bucket=s3_bucket, Key=f"{PREFIX}/{name}")
        assert head["ContentType"] == content_type
        assert head["CacheControl"] == "public, max-age=31536000, immutable"


def test_presigned_urls_fetch_the_object_and_say_when_they_expire(s3_bucket):
    store = S3Storage(s3_bucket, PREFIX)
    name = new_name()
    store.save(name, DATA)
    url = store.presigned_url(name, 120)
    assert "X-Amz-Expires=120" in url and "X-Amz-Signature=" in url  # SigV4, 2 minutes
    with urllib.request.urlopen(url) as answer:
        assert answer.read() == DATA and answer.headers["Content-Type"] == "image/png"


def test_open_storage_reads_the_url(tmp_path, s3_env, s3_bucket):
    default = open_storage(None, tmp_path / "default")
    assert isinstance(default, LocalStorage) and default.root == tmp_path / "default"
    chosen = open_storage(f"file://{tmp_path}/my%20files", tmp_path / "default")
    assert isinstance(chosen, LocalStorage) and chosen.root == tmp_path / "my files"
    bucket = open_storage(f"s3://{s3_bucket}/a/b/", tmp_path)
    assert isinstance(bucket, S3Storage) and (bucket.bucket, bucket.prefix) == (s3_bucket, "a/b/")
    assert bucket.location == f"s3://{s3_bucket}/a/b/"
    bare = open_storage(f"s3://{s3_bucket}", tmp_path)
    assert bare.prefix == "" and bare.location == f"s3://{s3_bucket}/"


def test_local_installs_never_import_boto3(tmp_path):
    # Only deployments with S3 pay its import (~200 ms): building the app on local disk,
    # which every CLI command does, must not load it.
    code = ("import sys; from runbase_web import create_app; create_app(); "
            "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules, 'imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, env={"RUNBASE_DATA_DIR": str(tmp_path),
                                             "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
