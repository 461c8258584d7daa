"""The CI-sized run of docs/rest-api.md#openapi-what-the-document-promises: schemathesis
with every check, and its coverage, fuzzing and stateful phases, against a live server
with the demo loaded. Fewer examples per operation than the full run the docs show."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from automation.services.api_auth import api_client_create, tokens_issue
from tests.api.support import API_DB
from tests.worker import ROOT

pytestmark = [API_DB, pytest.mark.slow]

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


def test_schemathesis_finds_nothing_against_the_demo(live_server, tmp_path):
    call_command("load_demo", verbosity=0)
    client, _ = api_client_create(name="Fuzz", rate_limit_per_minute=0)
    token = tokens_issue(client=client)["accessToken"]
    report = tmp_path / "report.json"
    done = subprocess.run(
        [str(SCHEMATHESIS), "--config-file", str(ROOT / "config" / "schemathesis.toml"), "run",
         f"{live_server.url}/api/schema/", "--checks", "all",
         "--phases", "coverage,fuzzing,stateful", "--max-examples", "2", "--workers", "2",
         "--seed", "23", "--no-color", "--generation-database", "none",
         "--report", "json", "--report-json-path", str(report),
         "-H", f"Authorization: Bearer {token}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "0 failures" in done.stdout or "passed" in done.stdout, done.stdout[-2000:]
    assert report.exists() and json.loads(report.read_text())
