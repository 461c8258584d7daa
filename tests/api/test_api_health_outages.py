"""/healthz answers 503 and names the part that is down, against a real server process
whose broker or database cannot be reached (a closed port), as on a broken deployment."""

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.worker import ROOT, wait_for, worker_env

pytestmark = pytest.mark.django_db(transaction=True)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server():
    """Start gunicorn (the app server of docs/operating.md) with extra environment variables; yields
    a function that returns the started server's base URL."""
    started = []

    def start(**env: str) -> str:
        port = closed_port()
        log = open(ROOT / "var" / f"healthz-server-{port}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "config.wsgi:application",
             "--bind", f"127.0.0.1:{port}", "--workers", "1"],
            cwd=ROOT, env=worker_env(ENTITYFLOW_Q_SYNC="0", **env),
            stdout=log, stderr=subprocess.STDOUT,
        )
        started.append(proc)
        base = f"http://127.0.0.1:{port}"

        def answering():
            try:
                return requests.get(f"{base}/healthz", timeout=5) is not None  # 503 is an answer
            except requests.ConnectionError:
                assert proc.poll() is None, f"the server exited; see {log.name}"
                return None

        wait_for(answering, timeout=60, interval=0.2, message="the server to answer")
        return base

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(15)


def test_healthz_names_an_unreachable_broker(server):
    base = server(REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0")
    response = requests.get(f"{base}/healthz", timeout=10)
    assert response.status_code == 503
    body = response.json()
    assert body["database"] == "ok"
    assert body["broker"] == "down"
    assert "broker" in body["errors"]


def test_healthz_names_an_unreachable_database(server):
    base = server(DATABASE_URL=f"postgres://postgres@127.0.0.1:{closed_port()}/entityflow",
                  REDIS_URL="")
    response = requests.get(f"{base}/healthz", timeout=20)
    assert response.status_code == 503
    body = response.json()
    assert body["database"] == "down"
    assert body["errors"]["database"]  # the kind of failure, never a connection string
    assert "postgres://" not in response.text
