"""`flask --app app copy-files-to-storage`: an install that kept its files on disk moves
them to S3; the command is safe to re-run, and the files then serve from the bucket."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from runbase_web import create_app, state
from runbase_web.extensions import db
from runbase_web.storage import LocalStorage, S3Storage
from tests.conftest import wait_for_run
from tests.support.s3_server import PREFIX
from tests.support import s3_server

SKETCH = {"model": "local/sketch", "input": {"prompt": "an orchard", "num_images": 2}}


@pytest.fixture
def app_config():
    """The app of these tests keeps its files on disk, as before the move."""
    return {}


@pytest.fixture
def moved(app, s3_bucket):
    """The same install (database, data dir) restarted with RUNBASE_STORAGE_URL set."""
    settings = {key: app.config[key] for key in (
        "DATA_DIR", "DATABASE_URL", "TESTING", "PROVIDER_ENV", "CATALOG_PATH", "RATE_LIMIT",
        "PUBLIC_URL", "TRUSTED_PROXIES", "WTF_CSRF_ENABLED")}
    application = create_app({**settings, "STORAGE_URL": f"s3://{s3_bucket}/{PREFIX}"})
    yield application
    db.state(application).dispose()


def test_copy_then_rerun_then_serve_from_the_bucket(app, client, auth, worker, moved,
                                                    s3_env, s3_bucket):
    assert isinstance(state.storage(app), LocalStorage)
    assert isinstance(state.storage(moved), S3Storage)
    run_id = client.post("/api/v1/runs", json=SKETCH, headers=auth).get_json()["id"]
    paths = wait_for_run(app, run_id, until=("succeeded",)).output_urls
    files = Path(app.config["DATA_DIR"]) / "files"
    # Besides the two outputs: a temp file of an interrupted write and a stray file.
    (files / ".incoming-abc123").write_bytes(b"partial")
    (files / "notes.txt").write_text("not ours")

    on_disk = {path.rsplit("/", 1)[1]: (files / path.rsplit("/", 1)[1]).read_bytes()
               for path in paths}
    for path in paths:
        assert moved.test_client().get(path).status_code == 404  # not in the bucket yet

    cli = moved.test_cli_runner()
    result = cli.invoke(args=["copy-files-to-storage"])
    assert result.exit_code == 0, result.output
    assert result.output == (f"Copied 2 file(s) to s3://{s3_bucket}/{PREFIX}/; "
                             "skipped 0 already there.\n")
    bucket = s3_server.client(s3_env)
    keys = sorted(item["Key"] for item in bucket.list_objects_v2(Bucket=s3_bucket)["Contents"])
    assert keys == sorted(f"{PREFIX}/{name}" for name in on_disk)
    for name, data in on_disk.items():
        obj = bucket.get_object(Bucket=s3_bucket, Key=f"{PREFIX}/{name}")
        assert obj["Body"].read() == data and obj["ContentType"] == "image/png"

    # Again: nothing is copied twice.
    result = cli.invoke(args=["copy-files-to-storage"])
    assert result.exit_code == 0, result.output
    assert "Copied 0 file(s)" in result.output and "skipped 2 already there" in result.output

    # An object of the wrong size (a copy cut short elsewhere) is copied again.
    name = sorted(on_disk)[0]
    bucket.put_object(Bucket=s3_bucket, Key=f"{PREFIX}/{name}", Body=b"cut")
    result = cli.invoke(args=["copy-files-to-storage"])
    assert "Copied 1 file(s)" in result.output and "skipped 1 already there" in result.output

    # The moved install serves the files from the bucket (the disk no longer matters).
    for entry in files.iterdir():
        entry.unlink()
    visitor = moved.test_client()
    for path in paths:
        name = path.rsplit("/", 1)[1]
        with visitor.get(path) as served:
            assert served.status_code == 200 and served.data == on_disk[name]
            assert served.headers["ETag"] == f'"{hashlib.sha256(on_disk[name]).hexdigest()}"'
        with visitor.get(path, headers={"Range": "bytes=0-7"}) as part:
            assert part.status_code == 206 and part.data == on_disk[name][:8]


def test_copy_from_another_directory(app, moved, tmp_path, s3_env, s3_bucket):
    elsewhere = tmp_path / "old-files"
    elsewhere.mkdir()
    name = "A" * 32 + ".mp4"
    (elsewhere / name).write_bytes(b"\x00\x00\x00\x18ftypmp42")
    result = moved.test_cli_runner().invoke(args=["copy-files-to-storage", "--from", str(elsewhere)])
    assert result.exit_code == 0 and "Copied 1 file(s)" in result.output, result.output
    head = s3_server.client(s3_env).head_object(Bucket=s3_bucket, Key=f"{PREFIX}/{name}")
    assert head["ContentType"] == "video/mp4" and head["ContentLength"] == 12


def test_copy_refuses_to_copy_the_store_onto_itself(app):
    result = app.test_cli_runner().invoke(args=["copy-files-to-storage"])
    assert result.exit_code == 1
    assert "is the configured storage itself: set RUNBASE_STORAGE_URL" in result.output
    assert "Traceback" not in result.output
