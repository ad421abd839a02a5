"""Clients generated from the served /api/v1/openapi.json, used the way an API customer uses
them: a Python client (openapi-python-client) drives create → poll → download and meets
every documented error, and TypeScript types (openapi-typescript) type-check, with `tsc
--strict`, real responses recorded from a live server.

The client is generated from one server, where only the local models are available, and
also used against another server that runs openai/gpt-image-1 (on a fake OpenAI API): a
client generated from one Runbase server must work against any other.

The database plays no part in what is checked here, so these run on SQLite only.
"""
from __future__ import annotations

import importlib
import io
import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
import requests
from PIL import Image
from flask import Flask, request
from sqlalchemy.exc import OperationalError
from werkzeug.serving import make_server

from runbase_web import create_app
from runbase_web.extensions import db
from runbase_web.services import keys
from runbase_web.worker import Worker
from tests.fakes import openai as fake_openai
from tests.fakes.server import FakeServer, FakeState
from tests.support.node_tools import NODE_DIR, node_tool, run_tool

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

#: Requests per key on the test server: enough for a test's own calls, and quick to
#: exhaust for the 429s.
LIMIT = 60
#: A test-only request header that makes the server fail (see `faults`).
FAULT = "X-Test-Fault"
PNG = b"\x89PNG\r\n\x1a\n"
EVIL_HOST = {"Host": "attacker.invalid"}
#: Uploads on the test server: a tiny limit, so that a 413 is quick to meet.
UPLOAD_LIMIT = 4096
#: A file name no upload has: getFile's 404.
NO_FILE = "A" * 32 + ".png"


def small_png() -> bytes:
    """A real, small PNG to upload."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 90)).save(buffer, "PNG")
    return buffer.getvalue()


def _upload(m, data: bytes | None = None):
    """uploadFile's arguments: a multipart body with `data` (a small PNG by default)."""
    types = importlib.import_module("runbase_api.types")
    return {"body": m.UploadFileBody(file=types.File(payload=io.BytesIO(small_png() if data is None else data),
                                                     file_name="image.png"))}


@pytest.fixture
def app_config():
    # An hour's window: a key used up for the 429s stays used up however slow the test is.
    return {"RATE_LIMIT": (LIMIT, 3600), "MAX_CONTENT_LENGTH": 2048, "FETCH_ALLOW_LOOPBACK": True,
            "UPLOAD_MAX_BYTES": UPLOAD_LIMIT}


@pytest.fixture(autouse=True)
def faults(app):
    """`X-Test-Fault: 500` makes a request hit a bug, `503` find the database out of reach,
    so that every operation's 500 (`default`) and 503 answers can be met. Only on this
    test's app: a hook registered before it serves anything."""
    def fail_on_request():
        wanted = request.headers.get(FAULT)
        if wanted == "500":
            raise RuntimeError("injected failure")
        if wanted == "503":
            raise OperationalError("SELECT 1", {}, ConnectionRefusedError("injected outage"))
    app.before_request(fail_on_request)


@dataclass
class Keys:
    """API keys in the states the errors need."""

    main: str       # a rich account
    poor: str       # a balance of 0: 402
    blocked: str    # an IP allowlist without 127.0.0.1: 403 ip_not_allowed
    limited: str    # a spend limit below any run's cost: 403 on create
    spent: str      # its rate limit used up: 429


def _set_key(app: Flask, full_key: str, ip_allowlist: list[str], limit: int | None) -> None:
    with app.app_context():
        key = keys.find_active_key(db.session, full_key)
        keys.update_settings(db.session, key, keys.KeySettings(key.name, ip_allowlist, limit))
        db.session.commit()


@pytest.fixture
def api_keys(app, make_user, make_key) -> Keys:
    found = Keys(main=make_key(make_user(credit_micros=10**9)),
                 poor=make_key(make_user(credit_micros=0)),
                 blocked=make_key(make_user()), limited=make_key(make_user()),
                 spent=make_key(make_user()))
    _set_key(app, found.blocked, ["10.0.0.1"], None)
    _set_key(app, found.limited, [], 500)
    local = app.test_client()
    for _ in range(LIMIT):
        local.get("/api/v1/account", headers={"Authorization": f"Bearer {found.spent}"})
    return found


@pytest.fixture
def fake_openai_url():
    server = FakeServer(fake_openai.make_app(FakeState())).start()
    yield server.url
    threading.Thread(target=server.stop, daemon=True).start()


def _serve(application: Flask):
    server = make_server("127.0.0.1", 0, application, threaded=True)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture
def openai_server(app, fake_openai_url):
    """Another Runbase server on the same database and files, where openai/gpt-image-1 is
    available (its provider is the fake OpenAI API), with a worker that runs every run."""
    other = create_app({
        "DATA_DIR": app.config["DATA_DIR"], "DATABASE_URL": app.config["DATABASE_URL"],
        "TESTING": True, "PUBLIC_URL": "", "CATALOG_PATH": None, "RATE_LIMIT": None,
        "WORKER_POLL_SECONDS": 0.2, "LEASE_SECONDS": 30, "TRUSTED_PROXIES": 0,
        "FETCH_ALLOW_LOOPBACK": True,
        "PROVIDER_ENV": {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": fake_openai_url + "/v1"}})
    worker = Worker(other, threads=2).start()
    server, thread = _serve(other)
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)
    worker.stop(wait=True)
    db.state(other).dispose()


# --- the Python client ----------------------------------------------------------------------


def generate_python_client(base_url: str, directory: Path) -> ModuleType:
    """openapi-python-client's package for the document `base_url` serves, imported."""
    document = requests.get(f"{base_url}/api/v1/openapi.json", timeout=30)
    assert document.status_code == 200
    (directory / "openapi.json").write_bytes(document.content)
    # No post-hooks: they only reformat the generated code.
    # getFile answers the image in its own type; the client reads any of them as bytes.
    images = {kind: "application/octet-stream" for kind in ("image/png", "image/jpeg", "image/webp")}
    (directory / "config.json").write_text(json.dumps({"post_hooks": [],
                                                       "content_type_overrides": images}))
    package = directory / "runbase_api"
    result = subprocess.run(
        [sys.executable, "-m", "openapi_python_client", "generate", "--meta", "none",
         "--path", str(directory / "openapi.json"), "--output-path", str(package),
         "--config", str(directory / "config.json")],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr
    sys.path.insert(0, str(directory))
    try:
        package = importlib.import_module("runbase_api")
        importlib.import_module("runbase_api.models")
        return package
    finally:
        sys.path.remove(str(directory))


@pytest.fixture
def python_client(http_server, tmp_path):
    """The package generated from the first server's document, imported as runbase_api."""
    module = generate_python_client(http_server, tmp_path)
    yield module
    for name in [name for name in sys.modules if name.split(".")[0] == "runbase_api"]:
        del sys.modules[name]


def _operation(api: ModuleType, tag: str, name: str) -> ModuleType:
    return importlib.import_module(f"runbase_api.api.{tag}.{name}")


def _wait_until_ended(get_run, client, run_id: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        answer = get_run.sync_detailed(client=client, id=run_id)
        assert answer.status_code == 200, answer.content
        if answer.parsed.status.value in ("succeeded", "failed"):
            return answer.parsed
        assert time.monotonic() < deadline, f"run {run_id} is still {answer.parsed.status}"
        time.sleep(0.2)


def _create_poll_download(api, client, body) -> bytes:
    """Create a run with the generated client, poll it until it ends, download its file."""
    create_run = _operation(api, "runs", "create_run")
    get_run = _operation(api, "runs", "get_run")
    created = create_run.sync_detailed(client=client, body=body)
    assert created.status_code == 201, created.content
    assert isinstance(created.parsed, api.models.Run)
    assert created.headers["Location"] == f"/api/v1/runs/{created.parsed.id}"
    run = _wait_until_ended(get_run, client, created.parsed.id)
    assert run.status == api.models.RunStatus.SUCCEEDED, (run.error, run.error_code)
    download = client.get_httpx_client().get(run.output.urls[0])
    assert download.status_code == 200
    return download.content


def test_generated_python_client_creates_polls_and_downloads_on_any_server(
        python_client, http_server, openai_server, api_keys):
    api, models = python_client, python_client.models
    here = api.AuthenticatedClient(base_url=f"{http_server}/api/v1", token=api_keys.main)
    there = api.AuthenticatedClient(base_url=f"{openai_server}/api/v1", token=api_keys.main)
    sketch = models.LocalSketchRunRequest(
        model="local/sketch", input_=models.LocalSketchInput(
            prompt="a lighthouse", aspect_ratio=models.LocalSketchInputAspectRatio.ASPECT_RATIO_16_9))
    assert _create_poll_download(api, here, sketch).startswith(PNG)

    gpt = models.OpenaiGptImage1RunRequest(
        model="openai/gpt-image-1", input_=models.OpenaiGptImage1Input(prompt="a lighthouse"))
    refused = _operation(api, "runs", "create_run").sync_detailed(client=here, body=gpt)
    assert refused.status_code == 400
    assert refused.parsed.error.code == models.ErrorCode.MODEL_NOT_FOUND
    assert "OPENAI_API_KEY" in refused.parsed.error.message
    # The same client, unchanged, against a server that runs the model.
    assert _create_poll_download(api, there, gpt).startswith(PNG)

    newer = models.OtherModelRunRequest(
        model="acme/brand-new", input_=models.OtherModelRunRequestInput.from_dict({"prompt": "x"}))
    refused = _operation(api, "runs", "create_run").sync_detailed(client=here, body=newer)
    assert refused.status_code == 400
    assert refused.parsed.error.code == models.ErrorCode.MODEL_NOT_FOUND

    listed = _operation(api, "models", "list_models").sync(client=here)
    assert {model.id for model in listed.data} >= {"local/sketch", "openai/gpt-image-1"}
    account = _operation(api, "account", "get_account").sync(client=here)
    assert account.api_key.spend_limit_usd is None and account.balance_usd > 0


#: Arguments each operation needs, by operation id: (tag, module, keyword arguments).
OPERATIONS = {
    "createRun": ("runs", "create_run", lambda m: {"body": m.LocalSketchRunRequest(
        model="local/sketch", input_=m.LocalSketchInput(prompt="a lighthouse"))}),
    "listRuns": ("runs", "list_runs", lambda m: {}),
    "getRun": ("runs", "get_run", lambda m: {"id": "run_missing"}),
    "cancelRun": ("runs", "cancel_run", lambda m: {"id": "run_missing"}),
    "getAccount": ("account", "get_account", lambda m: {}),
    "listModels": ("models", "list_models", lambda m: {}),
    "getModel": ("models", "get_model", lambda m: {"provider": "local", "name": "sketch"}),
    "uploadFile": ("files", "upload_file", _upload),
    "getFile": ("files", "get_file", lambda m: {"name": NO_FILE}),
}
#: Operations that need no key.
NO_KEY_ERRORS = ("listModels", "getModel")
#: Operations with a key that are not counted against its rate limit.
NOT_COUNTED = ("getFile",)


def _error_cases(api, base: str, api_keys: Keys) -> list[tuple[str, int, str, object, dict]]:
    """(operation id, status, code, client, arguments) for every error the document lists."""
    m = api.models

    def keyed(token: str, **headers):
        return api.AuthenticatedClient(base_url=base, token=token, headers=headers)

    main, anonymous = keyed(api_keys.main), api.Client(base_url=base)
    cases = []
    for operation, (_tag, _module, arguments) in OPERATIONS.items():
        cases += [(operation, 400, "host_not_allowed", keyed(api_keys.main, **EVIL_HOST), arguments(m)),
                  (operation, 500, "internal_error", keyed(api_keys.main, **{FAULT: "500"}), arguments(m)),
                  (operation, 503, "service_unavailable", keyed(api_keys.main, **{FAULT: "503"}),
                   arguments(m))]
        if operation not in NO_KEY_ERRORS:
            cases += [(operation, 401, "missing_api_key", anonymous, arguments(m)),
                      (operation, 401, "invalid_api_key", keyed("sk-" + "x" * 40), arguments(m)),
                      (operation, 403, "ip_not_allowed", keyed(api_keys.blocked), arguments(m))]
        if operation not in NO_KEY_ERRORS + NOT_COUNTED:
            cases += [(operation, 429, "RATE_LIMITED", keyed(api_keys.spent), arguments(m))]
    body = OPERATIONS["createRun"][2](m)["body"]
    empty_prompt = m.LocalSketchRunRequest(model="local/sketch", input_=m.LocalSketchInput(prompt=""))
    too_large = m.LocalSketchRunRequest(model="local/sketch", input_=m.LocalSketchInput(prompt="x" * 3000))
    cases += [
        ("createRun", 400, "invalid_input", main, {"body": empty_prompt}),
        ("createRun", 400, "invalid_idempotency_key", main, {"body": body, "idempotency_key": ""}),
        ("createRun", 402, "insufficient_balance", keyed(api_keys.poor), {"body": body}),
        ("createRun", 403, "api_key_spend_limit_exceeded", keyed(api_keys.limited), {"body": body}),
        ("createRun", 413, "payload_too_large", main, {"body": too_large}),
        # The key's first use, so that the next request can reuse it with another body.
        ("createRun", 201, "", main, {"body": body, "idempotency_key": "order-1"}),
        ("createRun", 422, "idempotency_key_reused", main,
         {"body": empty_prompt, "idempotency_key": "order-1"}),
        ("listRuns", 400, "invalid_query", main, {"limit": 0}),
        ("listRuns", 404, "run_not_found", main, {"after": "run_missing"}),
        ("getRun", 404, "run_not_found", main, {"id": "run_missing"}),
        ("cancelRun", 404, "run_not_found", main, {"id": "run_missing"}),
        ("getModel", 404, "not_found", main, {"provider": "acme", "name": "nothing"}),
        ("uploadFile", 400, "invalid_input", main, _upload(m, b"no image")),
        ("uploadFile", 413, "payload_too_large", main, _upload(m, b"\x00" * 2 * UPLOAD_LIMIT)),
        ("uploadFile", 201, "", main, _upload(m)),
        ("getFile", 404, "not_found", main, {"name": NO_FILE}),
    ]
    return cases


def _documented(document: dict) -> dict[str, set[str]]:
    """Operation id → the error responses it documents ("400", ..., "default")."""
    return {operation["operationId"]: {status for status in operation["responses"]
                                       if not status.startswith("2")}
            for item in document["paths"].values() for operation in item.values()}


def test_generated_python_client_meets_every_documented_error(python_client, http_server, api_keys):
    api, models = python_client, python_client.models
    base = f"{http_server}/api/v1"
    documented = _documented(requests.get(f"{base}/openapi.json", timeout=30).json())
    met: dict[str, set[str]] = {operation: set() for operation in documented}
    for operation, status, code, client, arguments in _error_cases(api, base, api_keys):
        tag, module, _ = OPERATIONS[operation]
        answer = _operation(api, tag, module).sync_detailed(client=client, **arguments)
        assert answer.status_code == status, (operation, code, answer.content)
        if status == 201:
            continue
        # Parsed into the typed Error, its code a member of the generated ErrorCode enum.
        assert isinstance(answer.parsed, models.Error), (operation, code, answer.content)
        assert answer.parsed.error.code == models.ErrorCode(code), (operation, answer.content)
        if status in (429, 503):
            assert int(answer.headers["Retry-After"]) >= 1
        met[operation].add(str(status) if str(status) in documented[operation] else "default")
    assert met == documented

    # 405 cannot be sent through the generated functions (they use the right methods): the
    # client's own HTTP session sends it, and the generated Error model reads the answer.
    client = api.AuthenticatedClient(base_url=base, token=api_keys.main)
    wrong = client.get_httpx_client().request("DELETE", "/runs")
    assert wrong.status_code == 405 and "POST" in wrong.headers["Allow"]
    assert models.Error.from_dict(wrong.json()).error.code == models.ErrorCode.METHOD_NOT_ALLOWED


# --- TypeScript -----------------------------------------------------------------------------


class Recorder:
    """Real exchanges with a live server, each with the TypeScript type its body must have:
    the documented response of its operation for its status (`default` when the status is
    not listed), a create body, or the webhook payload."""

    def __init__(self, base: str, document: dict):
        self.base = base
        self.document = document
        self.values: list[tuple[str, object]] = []
        #: (path template, method, response key) of every answer recorded.
        self.covered: set[tuple[str, str, str]] = set()

    def response(self, method: str, path: str, template: str, status: int,
                 headers: dict | None = None, *, as_method: str | None = None, **kwargs) -> dict:
        """Send a request, check its status, record its JSON body as the response of the
        operation `as_method` (default: `method`) on `template`."""
        answer = requests.request(method, f"{self.base}/api/v1{path}", headers=headers,
                                  timeout=30, **kwargs)
        assert answer.status_code == status, (method, path, answer.text)
        operation = (as_method or method).lower()
        listed = self.document["paths"][template][operation]["responses"]
        key = str(status) if str(status) in listed else "default"
        self.covered.add((template, operation, key))
        index = status if key != "default" else '"default"'
        self.values.append((f'paths["{template}"]["{operation}"]["responses"][{index}]'
                            '["content"]["application/json"]', answer.json()))
        return answer.json()

    def documented(self) -> set[tuple[str, str, str]]:
        """Every (path template, method, response key) the document lists."""
        return {(template, method, key) for template, item in self.document["paths"].items()
                for method, operation in item.items() for key in operation["responses"]}

    def request_body(self, value: dict) -> None:
        self.values.append(('paths["/runs"]["post"]["requestBody"]["content"]["application/json"]',
                            value))

    def webhook_payload(self, value: dict) -> None:
        self.values.append(('webhooks["runEnded"]["post"]["requestBody"]["content"]'
                            '["application/json"]', value))

    def typescript(self) -> str:
        """A module that assigns every recorded body to its type (object literals: an
        undocumented field is an error, as is a null where the type has none)."""
        lines = ['import type { paths, webhooks } from "./schema";', ""]
        for number, (type_, value) in enumerate(self.values):
            lines.append(f"export const value{number}: {type_} = {json.dumps(value, indent=1)};")
        return "\n".join(lines) + "\n"


def _webhook_receiver():
    received: list[dict] = []
    receiver = Flask("receiver")

    @receiver.post("/hook")
    def hook():
        received.append(request.get_json())
        return "", 204
    return FakeServer(receiver).start(), received


def _record_runs(recorder: Recorder, auth: dict, hook_url: str) -> None:
    sketch = {"model": "local/sketch", "input": {"prompt": "a lighthouse"}, "webhook": hook_url}
    run = recorder.response("POST", "/runs", "/runs", 201, auth, json=sketch)
    deadline = time.monotonic() + 30
    while run["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
        run = recorder.response("GET", f"/runs/{run['id']}", "/runs/{id}", 200, auth)
    assert run["output"]["urls"]
    recorder.response("POST", f"/runs/{run['id']}/cancel", "/runs/{id}/cancel", 200, auth)
    failing = {"model": "local/test", "input": {"prompt": "no", "outcome": "fail"}}
    failed = recorder.response("POST", "/runs", "/runs", 201, auth, json=failing)
    while failed["status"] != "failed":
        assert time.monotonic() < deadline
        time.sleep(0.2)
        failed = recorder.response("GET", f"/runs/{failed['id']}", "/runs/{id}", 200, auth)
    quick = recorder.response("POST", "/runs", "/runs", 201, auth,
                              json={"model": "local/test", "input": {"prompt": "stop"}})
    recorder.response("POST", f"/runs/{quick['id']}/cancel", "/runs/{id}/cancel", 200, auth)
    recorder.response("GET", "/runs?limit=5", "/runs", 200, auth)
    for body in (sketch, {"model": "openai/gpt-image-1", "input": {"prompt": "x"}, "webhook": None},
                 {"model": "acme/brand-new", "input": {"anything": [1, {"goes": True}]}}):
        recorder.request_body(body)


#: Each operation as a plain request: (method, path, path template, request arguments).
RAW_OPERATIONS = {
    "createRun": ("POST", "/runs", "/runs", {"json": {"model": "local/sketch", "input": {"prompt": "x"}}}),
    "listRuns": ("GET", "/runs", "/runs", {}),
    "getRun": ("GET", "/runs/run_missing", "/runs/{id}", {}),
    "cancelRun": ("POST", "/runs/run_missing/cancel", "/runs/{id}/cancel", {}),
    "getAccount": ("GET", "/account", "/account", {}),
    "listModels": ("GET", "/models", "/models", {}),
    "getModel": ("GET", "/models/local/sketch", "/models/{provider}/{name}", {}),
    "uploadFile": ("POST", "/files", "/files", {"files": {"file": ("image.png", PNG)}}),
    "getFile": ("GET", f"/files/{NO_FILE}", "/files/{name}", {}),
}


def _bearer(token: str, **extra) -> dict:
    return {"Authorization": f"Bearer {token}", **extra}


def _record_refusals_of_every_operation(recorder: Recorder, api_keys: Keys) -> None:
    """What any operation may answer: a foreign Host, a bug, the database away and, with a
    key, a missing, blocked or rate-limited one."""
    for operation, (method, path, template, kwargs) in RAW_OPERATIONS.items():
        cases = [(400, _bearer(api_keys.main, **EVIL_HOST)), (500, _bearer(api_keys.main, **{FAULT: "500"})),
                 (503, _bearer(api_keys.main, **{FAULT: "503"}))]
        if operation not in NO_KEY_ERRORS:
            cases += [(401, {}), (403, _bearer(api_keys.blocked))]
        if operation not in NO_KEY_ERRORS + NOT_COUNTED:
            cases += [(429, _bearer(api_keys.spent))]
        for status, headers in cases:
            recorder.response(method, path, template, status, headers, **kwargs)


def _record_errors(recorder: Recorder, api_keys: Keys) -> None:
    main = _bearer(api_keys.main)
    sketch = {"model": "local/sketch", "input": {"prompt": "x"}}
    for status, headers, kwargs in [
            (400, main, {"data": "{nope"}), (400, main, {"json": {"model": "local/sketch", "input": {}}}),
            (400, main, {"json": {"model": "openai/gpt-image-1", "input": {"prompt": "x"}}}),
            (402, _bearer(api_keys.poor), {"json": sketch}),
            (403, _bearer(api_keys.limited), {"json": sketch}),
            (413, main, {"json": {**sketch, "input": {"prompt": "x" * 3000}}})]:
        recorder.response("POST", "/runs", "/runs", status, headers, **kwargs)
    keyed = dict(main, **{"Idempotency-Key": "ts-1"})
    recorder.response("POST", "/runs", "/runs", 201, keyed, json=sketch)
    recorder.response("POST", "/runs", "/runs", 422, keyed, json={**sketch, "input": {"prompt": "y"}})
    recorder.response("GET", "/runs?status=", "/runs", 400, main)
    recorder.response("GET", "/runs?after=run_missing", "/runs", 404, main)
    for path, template in (("/runs/run_missing", "/runs/{id}"),
                           ("/runs/run_missing/cancel", "/runs/{id}/cancel")):
        recorder.response("POST" if "cancel" in path else "GET", path, template, 404, main)
    # A wrong method is the path's `default` answer: the envelope, typed Error.
    recorder.response("DELETE", "/runs/run_missing", "/runs/{id}", 405, main, as_method="get")
    recorder.response("GET", "/models/acme/nothing", "/models/{provider}/{name}", 404)
    recorder.response("POST", "/files", "/files", 400, main, files={"file": ("x.png", b"no image")})
    recorder.response("POST", "/files", "/files", 413, main,
                      files={"file": ("x.png", b"\x00" * 2 * UPLOAD_LIMIT)})
    recorder.response("GET", f"/files/{NO_FILE}", "/files/{name}", 404, main)
    _record_refusals_of_every_operation(recorder, api_keys)


def _record_files(recorder: Recorder, auth: dict) -> None:
    """An upload, and its bytes read back (not JSON: only its coverage is recorded)."""
    stored = recorder.response("POST", "/files", "/files", 201, auth,
                               files={"file": ("image.png", small_png())})
    image = requests.get(stored["url"], headers=auth, timeout=30)
    assert image.status_code == 200 and image.content.startswith(PNG)
    recorder.covered.add(("/files/{name}", "get", "200"))


def _record(recorder: Recorder, api_keys: Keys, hook_url: str) -> None:
    recorder.response("GET", "/models", "/models", 200)
    recorder.response("GET", "/models/openai/gpt-image-1", "/models/{provider}/{name}", 200)
    for token in (api_keys.main, api_keys.limited):
        recorder.response("GET", "/account", "/account", 200, _bearer(token))
    _record_runs(recorder, _bearer(api_keys.main), hook_url)
    _record_files(recorder, _bearer(api_keys.main))
    _record_errors(recorder, api_keys)


def test_typescript_types_accept_real_responses(live_server, api_keys, tmp_path):
    for tool in ("openapi-typescript", "tsc"):
        node_tool(tool)  # before recording: skip or fail at once when they are missing
    receiver, received = _webhook_receiver()
    try:
        document = requests.get(f"{live_server}/api/v1/openapi.json", timeout=30)
        recorder = Recorder(live_server, document.json())
        _record(recorder, api_keys, f"{receiver.url}/hook")
        deadline = time.monotonic() + 30
        while not received:
            assert time.monotonic() < deadline, "no webhook delivery"
            time.sleep(0.1)
        recorder.webhook_payload(received[0])
    finally:
        threading.Thread(target=receiver.stop, daemon=True).start()
    (tmp_path / "openapi.json").write_bytes(document.content)
    generated = run_tool("openapi-typescript", "openapi.json", "--output", "schema.d.ts", cwd=tmp_path)
    assert generated.returncode == 0, generated.stdout + generated.stderr
    (tmp_path / "responses.ts").write_text(recorder.typescript())
    (tmp_path / "tsconfig.json").write_text((NODE_DIR / "tsconfig.json").read_text())
    checked = run_tool("tsc", "--project", "tsconfig.json", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # Every response the document lists was met and type-checked.
    assert recorder.covered == recorder.documented()
