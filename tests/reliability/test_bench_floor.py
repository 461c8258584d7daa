"""`python -m bench floor` end to end, small: the statements a worker sends for a 3-step
run are captured and replayed from plain psycopg, and every replayed run ends completed
(the command fails otherwise). The floor is what docs/performance.md measures the e2e
round against; if the engine's statements change shape, this says so before a bench run
does. `--through-workers` replays them as one bare task per run in a real 2-worker
qcluster, alternated with bare no-op tasks (the e2e round's `e2e_nodb_ceiling`)."""

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings

from tests.worker import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.requires_services]


def _floor(*args: str) -> dict:
    db = settings.DATABASES["default"]
    session = settings.Q_CLUSTER["name"].rsplit("-", 1)[-1]
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/bench_floor_{session}"
    env = {**os.environ, "BENCH_POSTGRES_URL": url, "BENCH_REDIS_URL": settings.Q_CLUSTER["redis"],
           "BENCH_CLUSTER_NAME": f"floor-{session}"}
    done = subprocess.run(  # noqa: S603 - our own bench
        [sys.executable, "-m", "bench", "floor", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])["floor"]


def test_the_floor_replays_a_workers_statements_and_every_run_completes():
    floor = _floor("--runs", "20")
    assert floor["processes"] == 2 and floor["steps"] == 2 * 20 * 3
    assert floor["steps_per_s"] > 0 and floor["backend_cpu_ms_per_step"] > 0


@pytest.mark.parametrize("group", [1, 4])
def test_the_floor_through_workers_completes_every_run_as_bare_tasks(group):
    """One run per task (the e2e round's `e2e_nodb_ceiling`), or a group of runs per task
    whose other doorbells find their steps taken (`--group`)."""
    floor = _floor("--through-workers", "--runs", "22", "--rounds", "2", "--group", str(group))
    assert floor["through_workers"] is True and floor["group"] == group
    assert len(floor["rounds_steps_per_s"]) == len(floor["rounds_bare_noop_tasks_per_s"]) == 2
    assert all(rate > 0 for rate in floor["rounds_steps_per_s"])
    # of the unrounded rates: the printed ones are rounded to whole steps and tasks
    ceiling = floor["steps_per_s"] / floor["bare_noop_tasks_per_s"]
    assert floor["e2e_nodb_ceiling"] == pytest.approx(ceiling, abs=0.005)
    assert floor["e2e_nodb_ceiling"] > 0
