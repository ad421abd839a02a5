"""T2: Schemathesis generates requests from our OpenAPI document and checks every
response against it: no 5xx, no response outside the documented schemas and codes.

Two runs: an in-process one (fast, per database backend, with the response checks), and
the CLI run with `--checks all` and every phase, stateful included, over real HTTP
against a server on which every catalog model is available, so that every model's input
schema is checked against the server's validation both ways (schema-valid accepted,
schema-invalid refused). tests/api/schemathesis.toml says what that run configures.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    ensure_resource_availability,
    ignored_auth,
    use_after_free,
)

from runbase_web.api.openapi import build_document
from runbase_web.catalog import Catalog

CONFIG = Path(__file__).with_name("schemathesis.toml")
schema = schemathesis.openapi.from_dict(build_document(Catalog.load(), "", env={}),
                                        config=SchemathesisConfig.from_path(CONFIG))
#: Every provider credential the catalog asks for, so that every model is available. No
#: worker runs in that test: runs stay pending and no provider is ever called.
ALL_PROVIDERS = {name: "set-for-schemathesis" for spec in Catalog.load().all()
                 for name in spec.requires_env}
#: Test cases per operation and phase (the run takes about 30 s on two busy cores).
MAX_EXAMPLES = 30


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("app_config", [{"PROVIDER_ENV": ALL_PROVIDERS, "RATE_LIMIT": None}])
def test_schemathesis_cli_all_checks_and_the_stateful_phase_pass(
        http_server, make_user, make_key, tmp_path):
    key = make_key(make_user(credit_micros=10**12))
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run",
        f"{http_server}/api/v1/openapi.json", "--checks", "all",
        "--phases", "examples,coverage,fuzzing,stateful", "--max-examples", str(MAX_EXAMPLES),
        "--generation-deterministic", "--workers", "1",
        "--header", f"Authorization: Bearer {key}", "--no-color"]
    # In tmp_path: Schemathesis keeps a cache directory in the working directory.
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    summary = result.stdout[result.stdout.find("SUMMARY"):]
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in summary, summary
    assert "Tested: 9" in summary and "Warnings" not in summary, summary


@pytest.fixture
def app_config():
    return {"RATE_LIMIT": None}


@schema.parametrize()
@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much, HealthCheck.data_too_large])
def test_api_conforms_to_openapi(case, app, auth):
    # Generated examples reuse one Idempotency-Key across different bodies, which the
    # contract refuses (422); idempotency has its own tests (test_idempotency.py).
    if case.headers:
        case.headers.pop("Idempotency-Key", None)
    # The follow-up checks replay the request over real HTTP outside the app, and the
    # auth check would replay it with our explicit header; auth has its own tests.
    response = case.call(app=app, base_url="/api/v1", headers=auth)
    case.validate_response(response, excluded_checks=[ensure_resource_availability, use_after_free, ignored_auth])
