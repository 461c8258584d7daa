"""A chunk's group with a real qcluster worker killed between its claim and its record
(engine.chunks, store.grouped): nothing of the group was visible, the sweeper finds
every claimed step by its lease, and every run completes once."""

import pytest

import tests.automation.worker_functions  # noqa: F401 - registers worker.* here too (the definition is validated in this process)
from automation.models import Run, StepRun
from automation.services.batches import batch_create
from automation.services.sweeper import steps_sweep
from tests.automation.test_batches import make_orders
from tests.worker import Worker, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

RUNS = 6


def test_a_worker_killed_mid_group_loses_nothing(order_type, make_process,
                                                 queued_mode, tmp_path):
    env = {"ENTITYFLOW_STEP_LEASE_SECONDS": "5", "ENTITYFLOW_CONTINUE_MAX_MS": "60000",
           "Q_TIMEOUT": "20", "Q_RETRY": "30"}
    make_orders(order_type, RUNS)
    process = make_process([{"id": "a", "type": "function", "function": "worker.pure",
                             "config": {"params": {"seconds": 0.5}}}],
                           entity_type=order_type, slug="pure-group")
    first = Worker(tmp_path / "w1.log", **env)
    try:
        batch = batch_create(entity_type=order_type, process=process)
        # the first step alone, then the other five claimed together: all six running
        wait_for(lambda: StepRun.objects.filter(run__batch=batch, status="running").count()
                 == RUNS, 60, interval=0.05, message="the chunk's steps to be claimed")
    finally:
        first.kill()
    # killed before the group's commit: no step recorded, no run ended
    assert not StepRun.objects.filter(run__batch=batch, status="completed").exists()
    assert not Run.objects.filter(batch=batch, status__in=Run.FINISHED).exists()
    claims = set(StepRun.objects.filter(run__batch=batch).values_list("claim", flat=True))
    assert len(claims) == 2  # the first step's claim and the group's
    second = Worker(tmp_path / "w2.log", **env)
    try:
        def finished():
            steps_sweep(pending_grace_seconds=5)  # what the scheduled sweeper does
            return Run.objects.filter(batch=batch, status="completed").count() == RUNS

        wait_for(finished, 90, interval=1, message="the batch to finish after the kill")
    finally:
        second.stop()
    steps = list(StepRun.objects.filter(run__batch=batch))
    assert len(steps) == RUNS  # none lost, none written twice
    assert {s.status for s in steps} == {"completed"}
    assert {s.attempt for s in steps} == {2}
    assert all("lost its worker (attempt 1)" in str(s.logs) for s in steps)
    assert sorted(s.output["ref"] for s in steps) == [f"B-{i:05d}" for i in range(RUNS)]
