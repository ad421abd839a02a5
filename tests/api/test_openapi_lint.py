"""A second validator on the served document: Redocly CLI lints it with its recommended
rules (tests/node/redocly.yaml says why the one rule turned off is off). Any error or
warning fails the test.

Linted as a production server serves it (RUNBASE_PUBLIC_URL set: absolute webhook URLs)
and as a laptop serves it (no public URL: site-relative webhook URLs, servers on the
address `python app.py` prints). The database plays no part, so SQLite only.
"""
from __future__ import annotations

import json

import pytest

from tests.support.node_tools import NODE_DIR, run_tool


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("app_config", [{"PUBLIC_URL": "https://gen.runbase.test"}, {}],
                         ids=["public-url", "laptop"])
def test_redocly_lints_the_served_document_clean(client, tmp_path):
    path = tmp_path / "openapi.json"
    served = client.get("/api/v1/openapi.json", base_url="http://127.0.0.1:5000")
    path.write_text(served.get_data(as_text=True))
    result = run_tool("redocly", "lint", str(path), "--config", str(NODE_DIR / "redocly.yaml"),
                      "--format", "json", cwd=tmp_path)
    report = json.loads(result.stdout[result.stdout.index("{"):])
    problems = [f"{p['severity']} {p['ruleId']}: {p['message']} at "
                f"{[location.get('pointer') for location in p.get('location', [])]}"
                for p in report["problems"]]
    assert problems == [], "\n".join(problems)
    assert report["totals"] == {"errors": 0, "warnings": 0, "ignored": 0}
    assert result.returncode == 0, result.stderr
