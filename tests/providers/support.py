"""Helpers the provider tests share: fake servers, catalog files, run creation, ledger
reads, a worker restart, and checks of stored outputs and refunds."""
from __future__ import annotations

import io
import json
import threading
import time

from sqlalchemy import select
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from runbase_web.extensions import db
from runbase_web.models import LedgerEntry, Run, User
from runbase_web.state import WORKER
from runbase_web.worker import Worker
from tests.conftest import wait_for_run
from tests.fakes.server import FakeServer, FakeState

PNG = b"\x89PNG\r\n\x1a\n"
#: An operator-added Replicate model (catalog entry), for the Replicate and routing tests.
PAINTER = {
    "id": "replicate/acme/painter", "name": "Acme Painter", "kind": "image",
    "adapter": "replicate", "upstream": "acme/painter",
    "description": "An operator-added Replicate image model.",
    "requires_env": ["REPLICATE_API_TOKEN"], "deadline_seconds": 600, "max_attempts": 3,
    "input_schema": {
        "type": "object", "required": ["prompt"], "additionalProperties": False,
        "properties": {
            "prompt": {"type": "string", "minLength": 1},
            "aspect_ratio": {"type": "string", "enum": ["1:1", "16:9"], "default": "1:1"},
            "num_outputs": {"type": "integer", "minimum": 1, "maximum": 4, "default": 1},
            "image_urls": {"type": "array", "maxItems": 1,
                           "items": {"type": "string", "format": "uri"}},
        },
    },
    "input_map": {"image_urls": "image[0]"},
    "price": {"micros": 3000, "per": "num_outputs"},
}
PAINTER_PINNED = {**PAINTER, "id": "replicate/acme/painter-pinned",
                  "upstream": "acme/painter:5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa"}


def write_catalog(tmp_path, entries: list[dict], name: str = "catalog.json") -> str:
    """An operator override file with these entries; returns its path."""
    path = tmp_path / name
    path.write_text(json.dumps({"models": entries}))
    return str(path)


def start_fake(make_app) -> tuple[FakeState, FakeServer]:
    """A fake provider on 127.0.0.1."""
    state = FakeState()
    return state, FakeServer(make_app(state)).start()


def stop_soon(server: FakeServer) -> None:
    """Stop a fake without waiting out werkzeug's 0.5 s shutdown poll (keeps the suite fast)."""
    threading.Thread(target=server.stop, daemon=True).start()


def create(client, auth, model: str, **input_) -> dict:
    """Create a run through the API; returns the run object."""
    input_.setdefault("prompt", "a red fox in the snow")
    response = client.post("/api/v1/runs", json={"model": model, "input": input_}, headers=auth)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def finish(app, client, auth, run: dict, timeout: float = 20) -> dict:
    """Wait for the run to end; returns it as the API shows it."""
    wait_for_run(app, run["id"], timeout=timeout)
    return client.get(f"/api/v1/runs/{run['id']}", headers=auth).get_json()


def ledger(app, run_id: str) -> list[tuple[str, int]]:
    """The run's ledger entries as (kind, amount)."""
    with app.app_context():
        return sorted((e.kind, e.amount_micros) for e in db.session.scalars(
            select(LedgerEntry).where(LedgerEntry.run_id == run_id)))


def balance(app, user) -> int:
    """The user's balance in micro-USD."""
    with app.app_context():
        return db.session.get(User, user.id).balance_micros


def wait_for_upstream_id(app, run_id: str, timeout: float = 10.0) -> str:
    """Wait until the worker committed the provider's id for the run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with app.app_context():
            run = db.session.get(Run, run_id)
            if run.upstream_id:
                return run.upstream_id
        time.sleep(0.02)
    raise AssertionError("the worker never committed an upstream id")


def wait_for_upstream_cancel(app, run_id: str, outcome: str = "sent", timeout: float = 30.0) -> None:
    """Wait until a worker recorded asking the provider to stop the run's job (`outcome`)."""
    deadline = time.monotonic() + timeout
    while True:
        with app.app_context():
            recorded = db.session.get(Run, run_id).upstream_cancel
        if recorded == outcome:
            return
        assert time.monotonic() < deadline, f"upstream cancel is {recorded!r}, not {outcome!r}"
        time.sleep(0.05)


def callbacks_sent(fake) -> list[dict]:
    """The callbacks a fake provider sent, each with our answer."""
    return list(fake.state.data.get("callbacks", []))


def wait_for_callbacks(fake, count: int, timeout: float = 10.0) -> list[dict]:
    """Wait until the fake has sent `count` callbacks and recorded our answers.

    A fake records a callback only once our answer is back, and the run it ends may be
    seen as ended a moment before that, so a test that waited for the run waits here too."""
    deadline = time.monotonic() + timeout
    while len(callbacks_sent(fake)) < count:
        assert time.monotonic() < deadline, f"only {len(callbacks_sent(fake))} callbacks were sent"
        time.sleep(0.02)
    return callbacks_sent(fake)


def restart_worker(app) -> None:
    """Crash the embedded worker between polls and start a fresh one (W2)."""
    app.extensions.pop(WORKER).stop(wait=False)
    app.extensions[WORKER] = Worker(app, threads=2).start()


def stored(client, url: str) -> bytes:
    """The bytes we serve for an output URL."""
    with client.get(url.removeprefix("http://localhost")) as response:
        assert response.status_code == 200
        return response.data


def assert_stored(client, run: Run, magic: bytes, offset: int = 0) -> None:
    """The run succeeded with files we store and serve ourselves."""
    assert run.status == "succeeded", run.error
    assert run.output_urls
    for url in run.output_urls:
        assert url.startswith("/files/generated/")
        with client.get(url) as response:
            assert response.status_code == 200
            assert response.data[offset:offset + len(magic)] == magic


def assert_failed_and_refunded(app, body: dict, code: str) -> None:
    """The API shows the run failed with `code`, and its charge came back exactly once."""
    assert body["status"] == "failed", body
    assert body["errorCode"] == code and body["error"], body
    assert ledger(app, body["id"]) == [("charge", -body["costUsd"]), ("refund", body["costUsd"])]


def refunded(app, user, run: dict, code: str, *, credit: int) -> Run:
    """The run failed with `code`, kept no outputs, and the user is back at `credit`."""
    done = wait_for_run(app, run["id"], timeout=20)
    assert done.status == "failed" and done.error_code == code, (done.status, done.error)
    assert done.output_urls is None
    assert ledger(app, run["id"]) == [("charge", -run["costUsd"]), ("refund", run["costUsd"])]
    assert balance(app, user) == credit
    return done


class FakeResponse:
    """Just enough of requests.Response for a client's error_for()."""

    def __init__(self, status, body, headers=None):
        self.status_code, self._body, self.headers = status, body, headers or {}
        self.text, self.reason = json.dumps(body), "x"

    def json(self):
        return self._body


def upload(client, auth, data: bytes, name: str) -> str:
    """Upload `data` as the key's input file (POST /api/v1/files); its URL."""
    boundary, body = encode_multipart({"file": FileStorage(io.BytesIO(data), name)})
    response = client.post("/api/v1/files", headers=auth, data=body,
                           content_type=f"multipart/form-data; boundary={boundary}")
    assert response.status_code == 201, response.get_json()
    return response.get_json()["url"]
