"""PostgreSQL crashing and refusing connections, on a private cluster of the test's own
(bench/pgcluster.py: initdb into a temporary directory, a free port; `pg_ctl stop -m
immediate` is the crash, the next start replays the WAL). The lane's shared server is
never stopped. Everything that talks to the private cluster runs in subprocesses (the
workers, gunicorn, tests/reliability/crash_scripts.py); this process reads it with psycopg.

PostgreSQL lane only: under CI=true these run, never skip (conftest.services_problem), and
a machine without the server binaries fails them.
"""

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import psycopg
import pytest
import requests

from bench import pgcluster
from bench.reliability import retry_later
from tests.reliability.crash_scripts import HOOK_TOKEN
from tests.worker import ROOT, wait_for

pytestmark = pytest.mark.slow


def _cluster(**settings) -> pgcluster.PrivateCluster:
    problem = pgcluster.available()
    if problem:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true: a private PostgreSQL cluster is needed: {problem}",
                        pytrace=False)
        pytest.skip(f"needs the PostgreSQL server binaries: {problem}")
    return pgcluster.PrivateCluster.started(settings)


def _env(cluster: pgcluster.PrivateCluster, **extra: str) -> dict:
    from django.conf import settings

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test",
           "DATABASE_URL": cluster.url("entityflow"), "PYTHONPATH": str(ROOT),
           "ENTITYFLOW_TEST_SESSION": f"crash{uuid.uuid4().hex[:8]}", "LOG_LEVEL": "WARNING",
           "ENTITYFLOW_Q_SYNC": "0", "REDIS_URL": settings.Q_CLUSTER.get("redis") or ""}
    env.update(extra)
    return env


def _script(env: dict, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "tests.reliability.crash_scripts", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _migrated(cluster: pgcluster.PrivateCluster, env: dict) -> None:
    cluster.create_database("entityflow")
    done = subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]


def _sql(cluster: pgcluster.PrivateCluster, query: str, *params):
    with psycopg.connect(cluster.url("entityflow"), connect_timeout=10) as conn:
        return conn.execute(query, params).fetchall()


@pytest.mark.requires_postgres
def test_a_completion_a_client_has_read_survives_an_immediate_stop():
    """The WAL writer is told to wait 10 s, so a commit that skipped the flush is still
    only in the server's memory when it crashes right after the client's read: the run's
    end and its steps' outputs must have been flushed before the client could see them."""
    cluster = _cluster(wal_writer_delay="10s", wal_writer_flush_after=0)
    try:
        env = _env(cluster, ENTITYFLOW_Q_SYNC="1")
        _migrated(cluster, env)
        read = _script(env, "complete_and_read")
        cluster.crash()
        cluster.start()

        seen = read["seen"]
        assert seen["status"] == "completed", seen
        rows = _sql(cluster, "SELECT status, result FROM automation_run WHERE id = %s",
                    uuid.UUID(read["run"]))
        assert rows == [("completed", {"n": 7})], "the completion the client read was lost"
        steps = _sql(cluster, "SELECT step_id, status, output FROM automation_steprun WHERE "
                     "run_id = %s ORDER BY id", uuid.UUID(read["run"]))
        assert steps == [("s0", "completed", {"n": 7}), ("s1", "completed", {"n": 7})]
        assert cluster.crashes == 1
    finally:
        cluster.destroy()


@pytest.fixture
def outage_cluster():
    cluster = _cluster()
    yield cluster
    cluster.destroy()


@pytest.mark.requires_services
def test_workers_hold_their_doorbells_while_the_database_is_down_and_resume_at_once(
        outage_cluster, tmp_path):
    """Runs are started (doorbells in Redis), then PostgreSQL crashes and stays down while
    a qcluster starts: its workers take a doorbell each, find the database gone, log one
    line and wait; the other doorbells stay queued. Every step resumes within 5 s of the
    database accepting connections again (no sweeper runs here), and the log holds one
    line per outage and per recovery per worker process, no traceback."""
    import redis

    cluster = outage_cluster
    env = _env(cluster, Q_WORKERS="2", Q_TIMEOUT="60", ENTITYFLOW_STEP_LEASE_SECONDS="90")
    _migrated(cluster, env)
    runs = _script(env, "start_runs", "12")["runs"]
    queue = f"django_q:entityflow-test-{env['ENTITYFLOW_TEST_SESSION']}:q"
    broker = redis.from_url(env["REDIS_URL"])
    assert broker.llen(queue) == 12
    cluster.crash()
    log = tmp_path / "worker.log"
    worker = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env,
                              stdout=open(log, "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
                              start_new_session=True)
    try:
        wait_for(lambda: log.read_text().count("database unreachable") >= 2, 60,
                 message="both workers to find the database down")
        time.sleep(3)  # a worker burning through its queue would have taken every doorbell
        # Taken from Redis but held, not spent: one in each worker's hand, django-q's
        # prefetch (queue_limit, workers ** 2 by default) and one in its pusher's hand.
        held = 12 - broker.llen(queue)
        assert held <= 2 + 2 ** 2 + 1, f"{held} doorbells taken while the database was down"
        assert broker.llen(queue) > 0
        assert worker.poll() is None

        cluster.start()
        back = time.monotonic()
        done = "SELECT count(*) FROM automation_run WHERE status = 'completed'"
        wait_for(lambda: _sql(cluster, done)[0][0] == len(runs), 30, interval=0.1,
                 message="every run to complete")
        resumed_in = time.monotonic() - back
        assert resumed_in <= 5, f"the steps resumed {resumed_in:.1f} s after the database"
    finally:
        _stop(worker)
    text = log.read_text()
    assert text.count("database unreachable") == 2, text[-3000:]  # one per worker process
    assert text.count("database reachable again") == 2, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert "Could not save task result" not in text
    steps = _sql(cluster, "SELECT count(*), max(attempt) FROM automation_steprun")
    assert steps == [(2 * len(runs), 1)]  # every step once: none failed, none re-run


@pytest.mark.requires_postgres
def test_the_api_answers_503_with_retry_after_while_the_database_is_down(outage_cluster,
                                                                       tmp_path):
    """gunicorn on the private cluster, which then crashes and stays down: every request
    (API and an inbound webhook) answers 503 `unavailable` with Retry-After in the one
    error format (never 500) and writes nothing; once the database is back the same
    requests succeed, with no restart."""
    cluster = outage_cluster
    env = _env(cluster, REDIS_URL="")
    _migrated(cluster, env)
    client = _script(env, "api_client")
    port = pgcluster.free_port()
    log = open(tmp_path / "gunicorn.log", "wb")  # noqa: SIM115
    server = subprocess.Popen([str(os.path.join(os.path.dirname(sys.executable), "gunicorn")),
                               "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
                               "--workers", "2"], cwd=ROOT, env=env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(base), 60, interval=0.2, message="gunicorn to answer")
        session = requests.Session()
        token = session.post(f"{base}/api/auth/authorize", json=client,
                             timeout=30).json()["accessToken"]
        session.headers["Authorization"] = f"Bearer {token}"
        events_before = _sql(cluster, "SELECT count(*) FROM entities_entityevent")[0][0]
        calls = [("post", "/api/events", {"type": "outage.test", "data": {"n": 1}}),
                 ("post", "/api/cases", {"firstName": "Outage"}),
                 ("get", f"/api/executions/{uuid.uuid4()}", None),
                 ("get", "/api/runs", None),
                 ("post", f"/hooks/outage?token={HOOK_TOKEN}", {"n": 1})]

        cluster.crash()
        for verb, path, body in calls:
            answer = getattr(session, verb)(f"{base}{path}", json=body, timeout=30)
            assert retry_later(answer), (verb, path, answer.status_code, answer.text[:300])
            assert answer.json()["error"]["code"] == "unavailable"
            assert "not applied" in answer.json()["error"]["message"]

        cluster.start()
        assert _sql(cluster, "SELECT count(*) FROM entities_entityevent")[0][0] == events_before
        answer = session.post(f"{base}/api/events", json=calls[0][2], timeout=30)
        assert answer.status_code == 202, answer.text[:300]
        answer = session.post(f"{base}/hooks/outage?token={HOOK_TOKEN}", json={"n": 2},
                              timeout=30)
        assert answer.status_code == 202, answer.text[:300]
        assert session.get(f"{base}/api/runs", timeout=30).status_code == 200
    finally:
        _stop(server)
        log.close()


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group; SIGKILL if it is still there after 30 s (a worker
    holding a doorbell while the database is down finishes only when it is back)."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def _answers(base: str) -> bool:
    try:
        return requests.get(f"{base}/healthz", timeout=5) is not None
    except requests.ConnectionError:
        return False


@pytest.mark.requires_services
def test_one_immediate_postgresql_restart_under_load(tmp_path):
    """The reliability scenario (bench/reliability.py) at a small size on a private
    cluster, which is stopped in immediate mode once mid-load and started again: the
    harness survives, workers and gunicorn recover without a restart, the API answers
    503 + Retry-After meanwhile (never 500), and afterwards nothing is lost and no effect
    happened twice."""
    from django.conf import settings

    problem = pgcluster.available()
    if problem:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true: {problem}", pytrace=False)
        pytest.skip(problem)
    env = {**os.environ, "BENCH_REDIS_URL": settings.Q_CLUSTER["redis"],
           "BENCH_CLUSTER_NAME": f"entityflow-crash-{uuid.uuid4().hex[:8]}",
           "BENCH_WORKDIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "bench", "reliability", "--quick", "--chaos",
                           "--pg-crash-only", "--entities", "120"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    print(done.stdout[-3000:])  # the summary, shown with -s
    figures = json.loads(done.stdout.strip().splitlines()[-1])["reliability"]
    assert done.returncode == 0, (figures, done.stdout[-3000:], done.stderr[-3000:])
    assert figures["pg_crashes"] == 1
    assert figures["lost"] == 0 and figures["duplicate_effects"] == 0
    assert figures["unexpected_5xx"] == 0 and figures["runs_failed"] == 0
    assert figures["retry_later"] > 0  # the client kept calling through the outage
    assert figures["runs_completed"] == figures["runs_created"] == figures["runs_expected"]
