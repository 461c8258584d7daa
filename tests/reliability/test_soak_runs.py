"""`python -m bench soak` end to end for half a minute: every kind of load it sends is
served and counted. The soak measures the README's 30-minute table; once, a change to its
set-up left it sending requests that were all 404s, and nothing noticed."""

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings

from tests.worker import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.requires_services]


def test_a_short_soak_serves_every_kind_of_load():
    db = settings.DATABASES["default"]
    server = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/postgres"
    session = settings.Q_CLUSTER["name"].rsplit("-", 1)[-1]
    env = {**os.environ, "BENCH_POSTGRES_URL": server,
           "BENCH_REDIS_URL": settings.Q_CLUSTER["redis"]}
    done = subprocess.run(  # noqa: S603 - our own bench
        [sys.executable, "-m", "bench", "soak", "--minutes", "0.5", "--window-seconds", "10",
         "--database", f"bench_soak_{session}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    figures = json.loads(done.stdout.strip().splitlines()[-1])["soak"]
    assert "error" not in figures, done.stdout[-3000:]
    assert figures["failures"] == {}
    assert sorted(figures["done"]) == ["api", "approvals", "saves", "webhooks"]
    assert min(figures["done"].values()) >= 5, figures["done"]
    assert all(status.startswith("2") for status in figures["http_statuses"]), figures
    assert figures["tables"][-1]["automation_run"] > 0
    assert [w["errors_5xx"] for w in figures["windows"]] == [0] * len(figures["windows"])
