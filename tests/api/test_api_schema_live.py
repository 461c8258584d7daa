"""The CI-sized run of docs/rest-api.md#openapi-what-the-document-promises: schemathesis
with every check, and its coverage, fuzzing and stateful phases, against a live server
process (gunicorn, as in production) with the demo loaded. Fewer examples per operation
than the full run the docs show."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from django.core.management import call_command

from automation.services.api_auth import api_client_create, tokens_issue
from tests.api.support import API_DB
from tests.worker import ROOT, wait_for, worker_env

pytestmark = [API_DB, pytest.mark.slow]

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def demo_server(settings):
    # The demo's runs stay queued (no worker here), as on a fresh install before
    # `qcluster` starts; running them inline would only make loading slow.
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    call_command("load_demo", verbosity=0)
    port = free_port()
    log = open(ROOT / "var" / f"schema-live-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(BIN / "gunicorn"), "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", "2"],
        cwd=ROOT, env=worker_env(), stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def answering():
        try:
            return requests.get(f"{base}/api/schema/", timeout=30).status_code == 200
        except (requests.ConnectionError, requests.Timeout):
            assert proc.poll() is None, f"the server exited; see {log.name}"
            return None

    try:
        wait_for(answering, timeout=120, interval=0.2, message="the server to answer")
        yield base
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()


def test_schemathesis_finds_nothing_against_the_demo(demo_server, tmp_path):
    client, _ = api_client_create(name="Fuzz", rate_limit_per_minute=0)
    token = tokens_issue(client=client)["accessToken"]
    report = tmp_path / "report.json"
    done = subprocess.run(
        [str(BIN / "schemathesis"), "--config-file", str(ROOT / "config" / "schemathesis.toml"),
         "run", f"{demo_server}/api/schema/", "--checks", "all",
         "--phases", "coverage,fuzzing,stateful", "--max-examples", "2",
         # one worker thread: CPython 3.11 builds ASTs with interpreter-wide state, and hypothesis
         # parses its filters' source while schemathesis's threads generate cases, so two threads
         # now and then fail with "SystemError: AST constructor recursion depth mismatch"
         "--workers", "1",
         "--seed", "23", "--no-color", "--generation-database", "none",
         "--report", "json", "--report-json-path", str(report),
         "-H", f"Authorization: Bearer {token}"],
        # its cache goes to the working directory: a temporary one, not the repository
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failure" not in done.stdout.split("SUMMARY")[-1]
    assert json.loads(report.read_text())
