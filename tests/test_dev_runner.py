"""`python3 dev.py run` (docs/contributing.md, "The dev runner"): it says why and exits
non-zero when it cannot serve, stops everything it started when a child dies or when it
is told to stop, and keeps django-q2's per-task lines out of the terminal.

Each test runs the real script against the virtualenv running the tests (ENTITYFLOW_VENV),
which `dev.py test` has set up, so nothing is installed again."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.worker import ROOT, wait_for

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")]
READY = "entityflow is running: http://127.0.0.1:"


@pytest.fixture(scope="module")
def venv_ready() -> None:
    """The virtualenv holds the current lock (its stamp is fresh), so dev.py installs nothing."""
    check = subprocess.run(
        [sys.executable, "-c", "import dev; print(dev.stamp_fresh([dev.RUN_LOCK, dev.DEV_LOCK]))"],
        cwd=ROOT, env={**os.environ, "ENTITYFLOW_VENV": sys.prefix}, capture_output=True,
        text=True, timeout=60)
    if check.stdout.strip() != "True":
        reason = f"this virtualenv was not set up by `python3 dev.py test`: {check.stderr}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def database(tmp_path_factory) -> str:
    """One SQLite file for the module: the second run finds it migrated and loaded."""
    return f"sqlite:///{tmp_path_factory.mktemp('devpy') / 'dev.sqlite3'}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dev_env(database: str, port: int) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in {"DJANGO_SETTINGS_MODULE", "REDIS_URL", "Q_LOG_LEVEL", "LOG_LEVEL"}}
    env.update(ENTITYFLOW_VENV=sys.prefix, PORT=str(port), DATABASE_URL=database,
               PYTHONUNBUFFERED="1", Q_CLUSTER_NAME=f"devpy-{port}")
    return env


def parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def descendants(pid: int) -> set[int]:
    children: dict[int | None, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        children.setdefault(parent_of(int(entry.name)), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.fixture
def dev_run(venv_ready, database, tmp_path):
    """Start `dev.py run` and wait until it says it is running (with the worker's
    processes up); yields (process, its output file). Kills whatever is left afterwards."""
    started = []

    def start() -> tuple[subprocess.Popen, Path]:
        out = tmp_path / f"dev-run-{len(started)}.log"
        with open(out, "wb") as log:
            proc = subprocess.Popen([sys.executable, "dev.py", "run"], cwd=ROOT, stdout=log,
                                    stderr=subprocess.STDOUT, env=dev_env(database, free_port()))
        started.append(proc)
        wait_for(lambda: READY in out.read_text() or proc.poll() is not None, timeout=300,
                 interval=0.5, message="dev.py run to say it is running")
        assert proc.poll() is None, out.read_text()
        wait_for(lambda: len(descendants(proc.pid)) >= 5, timeout=60,
                 message="the web server, qcluster and its workers")
        return proc, out

    yield start
    for proc in started:
        for pid in descendants(proc.pid) | {proc.pid}:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(10)


def test_run_on_a_busy_port_exits_non_zero_and_says_why(venv_ready, database):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run([sys.executable, "dev.py", "run"], cwd=ROOT, capture_output=True,
                              text=True, env=dev_env(database, port), timeout=120)
    assert done.returncode != 0
    assert f"dev.py: port {port} is already in use" in done.stderr
    assert f"PORT={port + 1} python3 dev.py run" in done.stderr


def test_sigterm_stops_every_child_and_the_terminal_stays_readable(dev_run):
    proc, out = dev_run()
    family = descendants(proc.pid)
    time.sleep(2)  # the worker is taking the demo's runs meanwhile
    text = out.read_text()
    assert text.index("Starting development server") < text.index(READY)
    assert "Processed 'automation.tasks" not in text and "Enqueued [" not in text
    assert "worker: qcluster running" in text and "user demo, password demo12345" in text
    assert "pip install" not in text  # the stamp was fresh: nothing installed again
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    assert [pid for pid in family if alive(pid)] == []
    assert "Stopped." in out.read_text()


def test_a_child_that_dies_stops_the_rest_and_exits_non_zero(dev_run):
    proc, out = dev_run()
    family = descendants(proc.pid)
    worker = next(pid for pid in family if parent_of(pid) == proc.pid
                  and b"qcluster" in Path(f"/proc/{pid}/cmdline").read_bytes())
    os.kill(worker, signal.SIGKILL)
    assert proc.wait(60) != 0
    assert "dev.py: the worker exited with code -9" in out.read_text()
    assert [pid for pid in family if alive(pid)] == []
