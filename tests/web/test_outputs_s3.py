"""The output component's files when outputs live in an S3 bucket (moto's standalone
server, tests/support/s3_server.py): posters are made from the bucket's copy and kept in
the bucket; downloads stream from it under their readable names."""
from __future__ import annotations

import re

import pytest

from runbase_web import posters, state
from runbase_web.extensions import db
from runbase_web.models import Run
from tests.conftest import wait_for_run
from tests.support.s3_server import (s3_bucket, s3_env, s3_server,  # noqa: F401 (fixtures)
                                     s3_storage_url)
from tests.web import HTMX


@pytest.fixture
def app_config(s3_storage_url):  # noqa: F811 (the fixture imported above)
    return {"STORAGE_URL": s3_storage_url}


def test_poster_and_download_of_a_video_in_a_bucket(app, signed_in, worker):
    response = signed_in.post("/playground/runs", headers=HTMX, data={
        "model": "local/sketch-video", "prompt": "Harbour lights", "duration": "1"})
    assert response.status_code == 201, response.text
    run_id = re.search(r'id="run-(run_[a-z0-9]+)"', response.text).group(1)
    assert wait_for_run(app, run_id, timeout=60).status == "succeeded"
    with app.app_context():
        video = db.session.get(Run, run_id).output_urls[0]
    name = video.rsplit("/", 1)[-1]
    storage = state.storage(app)
    assert storage.read(posters.poster_name(name)) is None
    poster = app.test_client().get(f"{video}/poster")
    assert poster.status_code == 200 and poster.data.startswith(b"\xff\xd8")
    assert storage.read(posters.poster_name(name)) == poster.data  # kept in the bucket
    with signed_in.get(f"/runs/{run_id}/outputs/0/download") as download:
        assert download.status_code == 200 and download.mimetype == "video/mp4"
        assert download.headers["Content-Disposition"] == f"attachment; filename=harbour-lights-{run_id}-1.mp4"
        assert download.data == storage.read(name)
