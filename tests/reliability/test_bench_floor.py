"""`python -m bench floor` end to end, small: the statements a worker sends for a 3-step
run are captured and replayed from plain psycopg, and every replayed run ends completed
(the command fails otherwise). The floor is what docs/performance.md measures the e2e
round against; if the engine's statements change shape, this says so before a bench run
does."""

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings

from tests.worker import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.requires_services]


def test_the_floor_replays_a_workers_statements_and_every_run_completes():
    db = settings.DATABASES["default"]
    session = settings.Q_CLUSTER["name"].rsplit("-", 1)[-1]
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/bench_floor_{session}"
    env = {**os.environ, "BENCH_POSTGRES_URL": url, "BENCH_REDIS_URL": settings.Q_CLUSTER["redis"],
           "BENCH_CLUSTER_NAME": f"floor-{session}"}
    done = subprocess.run(  # noqa: S603 - our own bench
        [sys.executable, "-m", "bench", "floor", "--runs", "20"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    floor = json.loads(done.stdout.strip().splitlines()[-1])["floor"]
    assert floor["processes"] == 2 and floor["steps"] == 2 * 20 * 3
    assert floor["steps_per_s"] > 0 and floor["backend_cpu_ms_per_step"] > 0
