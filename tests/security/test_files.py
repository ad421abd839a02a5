"""S9: output files are served only by their recorded, unguessable names."""
from __future__ import annotations

import re
import secrets

import pytest

from runbase_web import state
from runbase_web.extensions import db
from runbase_web.services import files
from tests.conftest import wait_for_run

NAME = re.compile(r"^([A-Za-z0-9_-]+)\.(png|jpg|webp|mp4|webm)$")

TRAVERSAL = [
    "/files/generated/../x", "/files/generated/../../etc/passwd", "/files/generated/..%2Fx",
    "/files/generated/..%2F..%2Fetc%2Fpasswd", "/files/generated/%2e%2e/x",
    "/files/generated/%2e%2e%2fx", "/files/generated/..", "/files/generated/%2e%2e",
    "/files/generated/.", "/files/generated/..%5cx", "/files/generated/%252e%252e%252fx",
    "/files/generated/x%00.png", "/files/generated//etc/passwd", "/files/generated/",
    "/files/generated/secret_key", "/files/generated/runbase.db",
    "/files/generated/.incoming-x",
]


def test_traversal_and_unknown_names_are_404(app, client):
    # A file present on disk but never recorded is not served either.
    storage = state.storage(app)
    unrecorded = f"{secrets.token_urlsafe(24)}.png"
    storage.save(unrecorded, b"\x89PNG not recorded")
    for url in TRAVERSAL + [f"/files/generated/{unrecorded}",
                            f"/files/generated/{secrets.token_urlsafe(24)}.png"]:
        response = client.get(url)
        assert response.status_code == 404, url


def test_names_are_at_least_128_random_bits(app, client, auth, worker):
    created = client.post("/api/v1/runs", json={"model": "local/sketch",
                                                "input": {"prompt": "a fox", "num_images": 2}},
                          headers=auth).get_json()
    run = wait_for_run(app, created["id"], until=("succeeded",))
    urls = client.get(f"/api/v1/runs/{run.id}", headers=auth).get_json()["output"]["urls"]
    names = [url.rsplit("/", 1)[1] for url in urls]
    assert len(names) == 2 and len(set(names)) == 2
    for name in names:
        stem = NAME.match(name).group(1)
        assert len(stem) * 6 >= 128, name  # URL-safe base64: 6 bits a character
        with client.get(f"/files/generated/{name}") as served:
            assert served.status_code == 200
        # One character off is an unknown name.
        other = ("A" if stem[0] != "A" else "B") + stem[1:]
        assert client.get(f"/files/generated/{name.replace(stem, other)}").status_code == 404


def test_generated_names_are_unique_and_url_safe(app, client, auth, user):
    run_id = client.post("/api/v1/runs", json={"model": "local/sketch",
                                               "input": {"prompt": "names"}},
                         headers=auth).get_json()["id"]
    with app.app_context():
        names = [files.store_output(db.session, state.storage(app), user_id=user.id, run_id=run_id,
                                    data=b"x", content_type="image/png").name
                 for _ in range(200)]
        db.session.rollback()
    assert len(set(names)) == len(names)
    for name in names:
        stem = NAME.match(name).group(1)
        assert len(stem) >= 22  # ceil(128 / 6)


def test_names_we_could_not_have_made_never_reach_the_database(client, monkeypatch):
    looked_up = []
    monkeypatch.setattr("runbase_web.files_web.files.find_file",
                        lambda session, name: looked_up.append(name))
    for url in TRAVERSAL + ["/files/generated/short.png", "/files/generated/" + "a" * 80 + ".png"]:
        assert client.get(url).status_code == 404, url
    assert looked_up == []
