"""Copy-as-code: the exact API calls that reproduce a run (key shown as $RUNBASE_API_KEY)."""
from __future__ import annotations

import json
import shlex

from ..urls import absolute_url


def request_body(model: str, run_input: dict) -> dict:
    """The POST /api/v1/runs body for `model` and `run_input`."""
    return {"model": model, "input": run_input}


def curl_snippet(base_url: str, model: str, run_input: dict) -> str:
    """A curl command that creates the run; the body is single-quoted for POSIX shells."""
    body = json.dumps(request_body(model, run_input), indent=2, ensure_ascii=False)
    return (f"curl -sS -X POST {shlex.quote(absolute_url(base_url, '/api/v1/runs'))} \\\n"
            '  -H "Authorization: Bearer $RUNBASE_API_KEY" \\\n'
            '  -H "Content-Type: application/json" \\\n'
            f"  -d {shlex.quote(body)}")


def python_snippet(base_url: str, model: str, run_input: dict) -> str:
    """A Python `requests` script that creates the run and polls it to the end."""
    # Not json.dumps: true/false/null are not Python literals.
    body = _python_literal(request_body(model, run_input))
    return "\n".join([
        "import os",
        "import time",
        "",
        "import requests",
        "",
        f"BASE = {base_url.rstrip('/')!r}",
        'HEADERS = {"Authorization": f"Bearer {os.environ[\'RUNBASE_API_KEY\']}"}',
        "",
        f"run = requests.post(f\"{{BASE}}/api/v1/runs\", headers=HEADERS, json={body}).json()",
        'while run["status"] in ("pending", "processing"):',
        "    time.sleep(1.5)",
        '    run = requests.get(f"{BASE}/api/v1/runs/{run[\'id\']}", headers=HEADERS).json()',
        'print(run["status"], run["output"] or run["error"])',
    ])


def _python_literal(value: object, indent: int = 0) -> str:
    """Format JSON-like data as a readable Python literal (True/False/None, 4-space indent)."""
    pad = " " * (indent + 4)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{pad}{json.dumps(k, ensure_ascii=False)}: {_python_literal(v, indent + 4)},"
                 for k, v in value.items()]
        return "{\n" + "\n".join(items) + "\n" + " " * indent + "}"
    if isinstance(value, list):
        if not value:
            return "[]"
        items = [f"{pad}{_python_literal(v, indent + 4)}," for v in value]
        return "[\n" + "\n".join(items) + "\n" + " " * indent + "]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)
