"""Bulk re-run of 1,000 failed runs through real worker processes: the batch honours its
rate limit (counted from the runs' creation times: never more runs by any moment than the
limit allows), is paused and resumed, and ends with each run re-run exactly once
(docs/user-guide/operating-runs.md)."""

import math
import time
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from automation.models import Batch, Run, StepRun
from automation.services.batches import (
    RATE_SLICE,
    batch_pause,
    batch_progress,
    batch_rerun_create,
    batch_resume,
)
from automation.services.processes import process_save
from tests.worker import Worker, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

RUNS = 1000
RATE = 12.0  # re-runs a second: 1,000 take ~85 s of fan-out


def failed_runs(process, n: int) -> list[Run]:
    """n runs that failed at step b (written as they would be, fast: this test is about
    the re-run, not the first failure)."""
    now = timezone.now() - timedelta(minutes=5)
    runs = [Run(id=uuid.uuid4(), process=process, version_id=process.current_version_id,
                trigger={"type": "manual"}, status=Run.Status.FAILED, started_at=now,
                finished_at=now, error={"message": "warehouse down", "code": "x", "step": "b"})
            for _ in range(n)]
    Run.objects.bulk_create(runs)
    StepRun.objects.bulk_create(
        [StepRun(run=r, step_id="a", step_type="function", status="completed", attempt=1,
                 input={}, output={"step": "a"}) for r in runs]
        + [StepRun(run=r, step_id="b", step_type="function", status="failed", attempt=1,
                   input={"step": "a"}, error={"message": "warehouse down"}) for r in runs])
    return runs


def segments(times: list[float]) -> list[list[float]]:
    """The stretches of creation times between pauses (gaps over 1.5 s)."""
    segments, current = [], [times[0]]
    for t in times[1:]:
        if t - current[-1] > 1.5:
            segments.append(current)
            current = []
        current.append(t)
    segments.append(current)
    return [s for s in segments if len(s) > 20]


def ahead_of_limit(stretch: list[float], rate: float) -> int:
    """How many runs the stretch had started beyond what the limit allows by each run's
    creation: the n-th run of a stretch may start n / rate seconds after its first, and a
    slice of the fan-out is written at once (one chunk, batches.RATE_SLICE of a second)."""
    slice_runs = math.ceil(rate * RATE_SLICE)
    return max(n - (rate * (t - stretch[0]) + slice_runs) for n, t in enumerate(stretch))


def test_bulk_rerun_of_1000_failed_runs_is_rate_limited_paused_resumed_and_exactly_once(
        effects, queued_mode, tmp_path):
    import tests.automation.worker_functions  # noqa: F401

    process = process_save(slug="ship", name="Ship", definition={"steps": [
        {"id": "a", "type": "function", "function": "worker.effect", "next": "b"},
        {"id": "b", "type": "function", "function": "worker.effect"}]})
    old = failed_runs(process, RUNS)
    workers = [Worker(tmp_path / "worker-1.log"), Worker(tmp_path / "worker-2.log")]
    try:
        batch = batch_rerun_create(process=process, filter={"failedAt": "b"},
                                   rate_per_second=RATE)
        assert batch.total == RUNS
        wait_for(lambda: batch.runs.count() >= 200, 120, message="200 re-runs")
        batch_pause(batch=batch)
        time.sleep(1.0)  # the fan-out sees the pause at its next slice
        at_pause = batch.runs.count()
        time.sleep(3.0)
        assert batch.runs.count() == at_pause < RUNS  # paused: nothing more starts
        assert Batch.objects.get(pk=batch.pk).status == Batch.Status.PAUSED
        batch_resume(batch=batch)
        wait_for(lambda: Run.objects.filter(batch=batch, status=Run.Status.COMPLETED).count()
                 == RUNS, 300, interval=0.5, message="every re-run to complete")
    finally:
        for worker in workers:
            worker.stop()

    created = sorted(t.timestamp() for t in batch.runs.values_list("created_at", flat=True))
    stretches = segments(created)
    assert len(stretches) == 2, [len(s) for s in stretches]  # before the pause and after it
    for stretch in stretches:
        # the promise is the limit: counted, so a slow machine cannot fail it ...
        assert ahead_of_limit(stretch, RATE) <= 1, ahead_of_limit(stretch, RATE)
        # ... and the limit is what holds the fan-out back, not a stall (a loose floor)
        assert (len(stretch) - 1) / (stretch[-1] - stretch[0]) >= RATE / 4

    reruns = list(Run.objects.filter(batch=batch))
    assert len(reruns) == RUNS
    assert sorted(str(r.rerun_of_id) for r in reruns) == sorted(str(r.pk) for r in old)
    assert all(r.trigger["fromStep"] == "b" for r in reruns)
    lines = effects.read_text().split()
    assert sorted(lines) == sorted(f"{r.pk}:b" for r in reruns)  # b once each, a kept
    assert batch_progress(Batch.objects.get(pk=batch.pk))["status"] == Batch.Status.COMPLETED
