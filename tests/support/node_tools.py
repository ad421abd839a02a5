"""The Node.js tools some API-document tests run (openapi-typescript, tsc, Redocly CLI).

They are pinned in tests/node/package.json and package-lock.json and installed there with
`npm ci` (.ci/run does it). Without them a local run skips those tests, saying how to
install them; in CI (`CI` set) a missing tool fails the test instead, so the checks can
never be skipped silently.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
BIN = NODE_DIR / "node_modules" / ".bin"
#: No telemetry, update checks or colour from the tools: the tests run offline.
QUIET_ENV = {"REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true",
             "NO_UPDATE_NOTIFIER": "1", "NO_COLOR": "1", "FORCE_COLOR": "0"}


def node_tool(name: str) -> Path:
    """The path of an installed tool; skips (locally) or fails (in CI) when it is missing."""
    path = BIN / name
    if path.exists() and shutil.which("node"):
        return path
    message = (f"{name} is not installed: run `npm ci` in tests/node (needs Node.js and npm, "
               "e.g. Debian's nodejs and npm packages)")
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def run_tool(name: str, *args: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run a tool with the quiet environment; returns the finished process (text output)."""
    env = {**os.environ, **QUIET_ENV}
    return subprocess.run([str(node_tool(name)), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
