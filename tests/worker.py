"""Start and stop real `qcluster` worker processes against the test database."""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def test_database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


def worker_env(**extra: str) -> dict:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "ENTITYFLOW_Q_SYNC": "0",
        "DATABASE_URL": test_database_url(),
        "ENTITYFLOW_FUNCTION_MODULES": "tests.automation.worker_functions",
        "Q_WORKERS": "2",
        "ENTITYFLOW_TEST_SESSION": settings.Q_CLUSTER["name"].rsplit("-", 1)[-1],
        "PYTHONPATH": str(ROOT),
    }
    if settings.Q_CLUSTER.get("redis"):
        env["REDIS_URL"] = settings.Q_CLUSTER["redis"]
    env.update(extra)
    return env


class Worker:
    """One qcluster (sentinel + workers) in its own process group."""

    def __init__(self, log_path: Path, **env: str):
        self.log = open(log_path, "ab")
        # libpq names every connection of this cluster, so the ones a SIGKILL orphans
        # can be found (see `kill`).
        self.application_name = f"entityflow-test-worker-{uuid.uuid4().hex[:12]}"
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"], cwd=ROOT,
            env=worker_env(PGAPPNAME=self.application_name, **env),
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL the whole cluster: no cleanup, no acknowledgements.

        On PostgreSQL the killed processes' server backends live on until they notice
        the closed socket, which a backend in the middle of a long statement (a batch
        chunk's INSERT … SELECT) only does when that statement ends. Meanwhile it holds
        its locks, and the test database's flush (TRUNCATE of every table, locked one by
        one) can deadlock against it. A crashed machine's backends go the same way; the
        test only hurries them, so the next test starts on a database nobody else uses."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        if connection.vendor == "postgresql":
            self._end_orphaned_backends()

    def _end_orphaned_backends(self) -> None:
        query = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s"
        with connection.cursor() as cursor:
            cursor.execute(query, [self.application_name])
        wait_for(lambda: not self._backends(), timeout=10, message="the killed worker's backends to end")

    def _backends(self) -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                           [self.application_name])
            return cursor.fetchone()[0]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


def wait_for(predicate, timeout: float, interval: float = 0.1, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def sweep_until_finished(run, timeout: float = 90, message: str = "the run to finish"):
    """Wait for `run` to finish while sweeping once a second, as the scheduled sweeper
    would: a killed worker's step is rung again once its lease has run out."""
    from automation.models import Run
    from automation.services.sweeper import steps_sweep

    def finished():
        steps_sweep(pending_grace_seconds=5)
        run.refresh_from_db()
        return run.status in Run.FINISHED

    wait_for(finished, timeout, interval=1, message=message)
