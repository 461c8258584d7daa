"""Many synchronous replies at once against a real server (docs/operating.md,
"Synchronous replies"): 200 requests with `?wait=` wait together on gunicorn over
loopback HTTP, and the database connections the web processes hold meanwhile are
counted in pg_stat_activity. PostgreSQL lane (LISTEN/NOTIFY); a real worker runs the
steps."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from django.db import connection

from automation.models import Run
from automation.services.processes import process_save
from tests.worker import ROOT, Worker, wait_for, worker_env
from tests.worker import test_database_url as database_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

WAITERS = 200
WEB_PROCESSES = 2
# per web process: room for every waiter in each. gunicorn does not spread connections
# evenly (one process may accept most of them); a request accepted by a process whose
# threads are all waiting queues until one is free (with 110 threads each, some of the
# 200 were not even written before the first waits ran out)
THREADS = WAITERS + 10
APP_NAME = "entityflow-web-under-test"
# A web process waits on one LISTEN connection; the small constant is for a request
# between its writes and its wait at the moment of counting.
HELD_AT_MOST = WEB_PROCESSES + 2
STARTED_AT_ONCE = 20  # requests let into their writes together (the database server is shared)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _web_connections() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND application_name = %s", [APP_NAME])
        return cursor.fetchone()[0]


@pytest.fixture
def gate(tmp_path, monkeypatch):
    import tests.automation.worker_functions  # noqa: F401  (registers worker.gate here too)

    path = tmp_path / "gate-open"
    monkeypatch.setenv("ENTITYFLOW_TEST_GATE", str(path))
    return path


@pytest.fixture
def server(tmp_path, gate, request):
    """gunicorn with config/gunicorn.py and GUNICORN_THREADS (or, with the param "sync",
    one sync worker as shipped) on the test database; on PostgreSQL its connections are
    named so they can be told from everyone else's."""
    port = _free_port()
    url = database_url()
    if url.startswith("postgres"):
        url += f"?application_name={APP_NAME}"
    workers = {"GUNICORN_WORKERS": "1"} if getattr(request, "param", None) == "sync" else {
        "GUNICORN_WORKERS": str(WEB_PROCESSES), "GUNICORN_THREADS": str(THREADS)}
    env = worker_env(DATABASE_URL=url, GUNICORN_BIND=f"127.0.0.1:{port}",
                     GUNICORN_LOG_LEVEL="warning", ENTITYFLOW_TEST_GATE=str(gate), **workers)
    log = open(tmp_path / "gunicorn.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "-c", "config/gunicorn.py",
         "config.wsgi"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def answering():
        assert proc.poll() is None, (tmp_path / "gunicorn.log").read_text()
        try:
            return requests.get(f"{base}/nothing-here", timeout=10) is not None
        except requests.RequestException:
            return None

    try:
        wait_for(answering, timeout=60, interval=0.2, message="gunicorn to answer")
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()


@pytest.mark.parametrize("server", ["sync"], indirect=True)
def test_a_sync_worker_answers_after_the_longest_wait(server, tokens):
    """No worker runs the steps: the request waits its full 30 s on a sync worker (as
    config/gunicorn.py ships it, whose timeout leaves room for that) and gets its 202."""
    process_save(slug="never", name="Never", definition={"steps": [
        {"id": "a", "type": "function", "function": "noop"}]})
    response = requests.post(f"{server}/api/workflow-definitions/never/trigger?wait=30",
                             json={}, timeout=90,
                             headers={"Authorization": f"Bearer {tokens['accessToken']}"})
    assert response.status_code == 202, response.text
    assert response.json() == {"executionId": str(Run.objects.get().pk)}


@pytest.mark.requires_postgres
def test_200_waiting_requests_hold_only_the_web_processes_own_connections(
        server, gate, tokens, tmp_path):
    process_save(slug="gated", name="Gated", definition={"steps": [
        {"id": "gate", "type": "function", "function": "worker.gate"}]})
    worker = Worker(tmp_path / "worker.log", ENTITYFLOW_TEST_GATE=str(gate))
    answers: dict[int, requests.Response | Exception] = {}

    def call(n: int) -> None:
        try:
            answers[n] = requests.post(
                f"{server}/api/workflow-definitions/gated/trigger?wait=30",
                json={"input": {"n": n}}, timeout=60,
                headers={"Authorization": f"Bearer {tokens['accessToken']}"})
        except Exception as exc:  # reported below, with the others
            answers[n] = exc

    threads = [threading.Thread(target=call, args=(n,), daemon=True) for n in range(WAITERS)]
    try:
        # let the requests in a few at a time (their writes each take a connection for a
        # moment; the database server is shared): at most STARTED_AT_ONCE of them have
        # not written their run yet. Then they all wait together.
        began, started = time.monotonic(), 0
        while started < WAITERS:
            if started - Run.objects.count() < STARTED_AT_ONCE:
                threads[started].start()
                started += 1
            else:
                time.sleep(0.02)
        wait_for(lambda: Run.objects.count() == WAITERS, 60, interval=0.05,
                 message="every run to be written")
        print(f"\n{WAITERS} runs written in {time.monotonic() - began:.1f} s")
        # the worker's two slots hold two gated steps; every run is still going
        assert not Run.objects.filter(status__in=Run.FINISHED).exists()

        def few_held():
            held = _web_connections()
            return (held,) if held <= HELD_AT_MOST else None

        # a request that wrote its run is about to close its connection: wait for that
        (held,) = wait_for(few_held, 30, interval=0.2,
                           message=f"the web processes to hold at most {HELD_AT_MOST} "
                                   "connections")
        waiting = sum(thread.is_alive() for thread in threads)
        print(f"\n{waiting} requests waiting at once; the {WEB_PROCESSES} web processes hold "
              f"{held} database connection(s) (pg_stat_activity)")
        assert waiting == WAITERS, answers  # none answered: all of them are waiting now
        assert held <= HELD_AT_MOST

        gate.touch()
        for thread in threads:
            thread.join(60)
    finally:
        gate.touch()
        worker.stop()

    problems = {n: a for n, a in answers.items() if isinstance(a, Exception)
                or a.status_code != 200}
    assert not problems and len(answers) == WAITERS, problems
    bodies = [answers[n].json() for n in range(WAITERS)]
    assert all(body["status"] == "completed" for body in bodies), bodies[:3]
    assert [body["result"] for body in bodies] == [{"n": n} for n in range(WAITERS)]
    assert len({body["executionId"] for body in bodies}) == WAITERS
