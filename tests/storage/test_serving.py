"""An app whose files live in S3 (moto's server), on SQLite and PostgreSQL: a local/sketch
run created through the API is run by the worker, stored in the bucket, and served at
/files/generated/ by streaming (ranges, conditional requests) or by a redirect to a
presigned URL; share pages serve outputs through the app."""
from __future__ import annotations

import hashlib
import io
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image
from sqlalchemy import text

from runbase_web import state
from runbase_web.extensions import db
from runbase_web.models import Run, StoredFile
from runbase_web.storage import S3Storage
from tests.conftest import wait_for_run
from tests.support.s3_server import PREFIX
from tests.support import s3_server
from tests.web import HTMX

SKETCH = {"model": "local/sketch", "input": {"prompt": "a lighthouse in fog"}}


def run_and_wait(app, client, auth, body=SKETCH) -> list[str]:
    """Create a run through the API, let the worker finish it; its output URL paths."""
    created = client.post("/api/v1/runs", json=body, headers=auth)
    assert created.status_code == 201, created.text
    run = wait_for_run(app, created.get_json()["id"], timeout=60)
    assert run.status == "succeeded"
    return run.output_urls


def stored_row(app, path: str) -> StoredFile:
    with app.app_context():
        return db.session.query(StoredFile).filter_by(name=path.rsplit("/", 1)[1]).one()


def test_a_run_stores_its_output_in_the_bucket_and_streams_it(app, client, auth, worker,
                                                              s3_env, s3_bucket):
    assert isinstance(state.storage(app), S3Storage)
    (path,) = run_and_wait(app, client, auth)
    row = stored_row(app, path)
    obj = s3_server.client(s3_env).get_object(Bucket=s3_bucket, Key=f"{PREFIX}/{row.name}")
    stored = obj["Body"].read()
    assert obj["ContentType"] == "image/png" and hashlib.sha256(stored).hexdigest() == row.sha256
    assert list((Path(app.config["DATA_DIR"]) / "files").iterdir()) == []  # nothing on disk

    with client.get(path) as whole:
        assert whole.status_code == 200 and whole.data == stored
        assert whole.mimetype == "image/png" and whole.content_length == len(stored)
        assert whole.headers["ETag"] == f'"{row.sha256}"'
        assert whole.headers["Accept-Ranges"] == "bytes"
        assert whole.cache_control.public and whole.cache_control.immutable
        assert whole.cache_control.max_age == 365 * 24 * 3600
    Image.open(io.BytesIO(whole.data)).verify()

    with client.get(path, headers={"Range": "bytes=100-1099"}) as part:
        assert part.status_code == 206 and part.data == stored[100:1100]
        assert part.headers["Content-Range"] == f"bytes 100-1099/{len(stored)}"
        assert part.content_length == 1000
    with client.get(path, headers={"Range": "bytes=-10"}) as tail:
        assert tail.status_code == 206 and tail.data == stored[-10:]
    with client.get(path, headers={"Range": f"bytes={len(stored)}-"}) as beyond:
        assert beyond.status_code == 416
    # If-Range with our ETag: the range; with another: the whole file.
    with client.get(path, headers={"Range": "bytes=0-9", "If-Range": f'"{row.sha256}"'}) as same:
        assert same.status_code == 206 and same.data == stored[:10]
    with client.get(path, headers={"Range": "bytes=0-9", "If-Range": '"other"'}) as changed:
        assert changed.status_code == 200 and changed.data == stored

    with client.get(path, headers={"If-None-Match": f'"{row.sha256}"'}) as cached:
        assert cached.status_code == 304 and cached.data == b""
    head = client.head(path)
    assert head.status_code == 200 and head.content_length == len(stored) and head.data == b""


def test_only_the_wanted_bytes_are_asked_of_the_bucket(app, client, auth, worker, monkeypatch):
    (path,) = run_and_wait(app, client, auth)
    storage = state.storage(app)
    asked = []
    get_object = storage.client.get_object
    monkeypatch.setattr(storage.client, "get_object",
                        lambda **request: asked.append(request.get("Range")) or get_object(**request))
    row = stored_row(app, path)
    client.get(path, headers={"Range": "bytes=5-14"}).close()
    client.get(path, headers={"If-None-Match": f'"{row.sha256}"'}).close()  # none at all
    client.get(path).close()
    assert asked == ["bytes=5-14", None]


def test_a_file_missing_from_the_bucket_is_404(app, client, auth, worker, s3_env, s3_bucket):
    (path,) = run_and_wait(app, client, auth)
    s3_server.client(s3_env).delete_object(Bucket=s3_bucket, Key=f"{PREFIX}/{path.rsplit('/', 1)[1]}")
    assert client.get(path).status_code == 404
    assert client.get(path, headers={"Range": "bytes=0-9"}).status_code == 404
    assert client.head(path).status_code == 404
    assert client.get(path.replace(".png", ".jpg")).status_code == 404  # never recorded


@pytest.fixture
def presign(app):
    app.config["STORAGE_PRESIGN_SECONDS"] = 300


def test_presigned_redirect_to_the_bucket(app, client, auth, worker, presign, s3_env):
    (path,) = run_and_wait(app, client, auth)
    row = stored_row(app, path)
    before = datetime.now(timezone.utc).replace(microsecond=0)
    answer = client.get(path)
    assert answer.status_code == 302
    assert answer.cache_control.private and answer.cache_control.max_age == 150
    target = answer.headers["Location"]
    assert target.startswith(f"{s3_env}/") and f"/{PREFIX}/{row.name}?" in target

    # The link works: the object's bytes, with its type.
    with urllib.request.urlopen(target) as fetched:
        data = fetched.read()
        assert fetched.headers["Content-Type"] == "image/png"
    assert hashlib.sha256(data).hexdigest() == row.sha256

    # ...and expires: signed (SigV4) for 300 s from now. moto's server does not refuse an
    # expired link (real S3 and MinIO do), so the test checks what the link says.
    query = parse_qs(urlsplit(target).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"] and query["X-Amz-Expires"] == ["300"]
    signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    assert 0 <= (signed_at - before).total_seconds() < 60
    assert "X-Amz-Signature" in query

    # Unknown names are still 404, never a link.
    assert client.get(path.replace(row.name[:5], "zzzzz")).status_code == 404


def test_presigned_links_are_fresh_for_each_request(app, client, auth, worker, presign):
    (path,) = run_and_wait(app, client, auth)
    first = client.get(path).headers["Location"]
    time.sleep(1.1)
    assert client.get(path).headers["Location"] != first  # signed again, from now


def share_token(app, client, run_id: str) -> str:
    assert client.post(f"/runs/{run_id}/share", headers=HTMX).status_code == 200
    with app.app_context():
        return db.session.get(Run, run_id).share_token


@pytest.mark.parametrize("presigned", [False, True])
def test_shared_outputs_go_through_the_app(app, signed_in, auth, worker, presigned):
    if presigned:  # the redirect is for /files/generated/ only
        app.config["STORAGE_PRESIGN_SECONDS"] = 300
    image_run = signed_in.post("/api/v1/runs", json=SKETCH, headers=auth).get_json()["id"]
    video_run = signed_in.post("/api/v1/runs", headers=auth, json={
        "model": "local/sketch-video", "input": {"prompt": "waves", "duration": 1}}).get_json()["id"]
    for run_id in (image_run, video_run):
        assert wait_for_run(app, run_id, timeout=90).status == "succeeded"
    visitor = app.test_client()

    token = share_token(app, signed_in, image_run)
    page = visitor.get(f"/s/{token}")
    assert page.status_code == 200 and f"/s/{token}/outputs/0" in page.text
    with visitor.get(f"/s/{token}/outputs/0") as image:
        assert image.status_code == 200 and image.mimetype == "image/png"
        Image.open(io.BytesIO(image.data)).verify()

    token = share_token(app, signed_in, video_run)
    with app.app_context():
        (path,) = db.session.get(Run, video_run).output_urls
    row = stored_row(app, path)
    stored = state.storage(app).read(row.name)
    assert stored is not None and len(stored) == row.size_bytes
    with visitor.get(f"/s/{token}/outputs/0") as video:
        assert video.status_code == 200 and video.mimetype == "video/mp4" and video.data == stored
    with visitor.get(f"/s/{token}/outputs/0", headers={"Range": "bytes=0-99"}) as part:
        assert part.status_code == 206 and part.data == stored[:100]
        assert part.headers["Content-Range"] == f"bytes 0-99/{len(stored)}"


def test_streaming_over_real_http(app, live_server, auth, s3_env, s3_bucket):
    import requests

    created = requests.post(f"{live_server}/api/v1/runs", json=SKETCH, headers=auth, timeout=10)
    assert created.status_code == 201
    (path,) = wait_for_run(app, created.json()["id"], until=("succeeded",)).output_urls
    stored = s3_server.client(s3_env).get_object(
        Bucket=s3_bucket, Key=f"{PREFIX}/{path.rsplit('/', 1)[1]}")["Body"].read()
    whole = requests.get(f"{live_server}{path}", timeout=10)
    assert whole.status_code == 200 and whole.content == stored
    assert whole.headers["Content-Length"] == str(len(stored))
    part = requests.get(f"{live_server}{path}", headers={"Range": "bytes=10-"}, timeout=10)
    assert part.status_code == 206 and part.content == stored[10:]
    assert part.headers["Content-Range"] == f"bytes 10-{len(stored) - 1}/{len(stored)}"
    # A download dropped after its first bytes leaves the app serving the next ones.
    with requests.get(f"{live_server}{path}", stream=True, timeout=10) as dropped:
        next(dropped.iter_content(100))
    assert requests.get(f"{live_server}{path}", timeout=10).content == stored


def test_a_bucket_that_fails_mid_run_gets_the_run_retried_not_lost(app, client, auth, worker,
                                                                    s3_env, s3_bucket):
    """Storage failing after the provider answered: the saved outputs are removed, the run
    goes back to wait for a retry after a backoff (not the lease's expiry, not a failure),
    and succeeds once the bucket works again; charged once, never refunded."""
    bucket = s3_server.client(s3_env)
    bucket.delete_bucket(Bucket=s3_bucket)  # empty: the start-up probe removed its object
    run_id = client.post("/api/v1/runs", json=SKETCH, headers=auth).get_json()["id"]
    deadline = time.monotonic() + 30
    while True:
        with app.app_context():
            run = db.session.get(Run, run_id, populate_existing=True)
            tried = run.attempts >= 1 and run.lease_owner is None and run.next_check_at
            status, error = run.status, run.error
            db.session.rollback()
        if tried:
            break
        assert time.monotonic() < deadline, "the worker never gave the run back"
        time.sleep(0.02)
    assert status in ("pending", "processing") and error is None
    bucket.create_bucket(Bucket=s3_bucket)
    done = wait_for_run(app, run_id, timeout=30)
    assert done.status == "succeeded" and done.attempts >= 2
    with app.app_context():
        kinds = [kind for kind, in db.session.execute(
            text("SELECT kind FROM ledger_entries WHERE run_id = :id"), {"id": run_id})]
    assert kinds == ["charge"]
