"""Concurrency on real workers (two qcluster processes, both lanes): 50 saves of one
order in about a second, with `concurrency.limit 1`, start 50 runs that never overlap
(read from their steps' started_at / finished_at), all complete, in the order of the
saves (docs/user-guide/concurrency.md)."""

import pytest

from automation.models import ProcessBreaker, Run, StepRun
from automation.services.processes import process_save
from entities.services import entity_create, entity_update

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ORDER = {"customer": {"name": "Ada"}, "total": 1}
TRIGGER = {"type": "event", "config": {"eventType": "entity.updated", "entityType": "order"}}
STEPS = [
    {"id": "first", "type": "function", "function": "worker.slow", "next": "second",
     "config": {"params": {"seconds": 0.02}}},
    {"id": "second", "type": "function", "function": "worker.effect"},
]


def test_fifty_saves_of_one_order_run_one_at_a_time_in_order(order_type, settings, tmp_path,
                                                              monkeypatch):
    import tests.automation.worker_functions  # noqa: F401  (registers the functions here too)
    from tests.worker import Worker, wait_for

    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    monkeypatch.setenv("ENTITYFLOW_TEST_EFFECTS", str(tmp_path / "effects.log"))
    process = process_save(slug="one-at-a-time", name="One at a time", entity_type=order_type,
                           definition={"steps": STEPS, "triggers": [TRIGGER],
                                       "concurrency": {"limit": 1}})
    # 50 saves of one entity in a second is what the circuit breaker calls a loop
    ProcessBreaker.objects.create(process=process, limits={"perEntityPerMinute": 1000})
    order = entity_create(entity_type=order_type, reference="W-1", data=ORDER)
    workers = [Worker(tmp_path / "worker-1.log"), Worker(tmp_path / "worker-2.log")]
    try:
        for total in range(2, 52):  # 50 saves, as fast as they go (about a second)
            order = entity_update(entity=order, data={**ORDER, "total": total})
        runs = Run.objects.filter(process=process)
        assert runs.count() == 50
        assert runs.filter(status="pending", pending_reason__isnull=False).exists()
        wait_for(lambda: runs.filter(status="completed").count() == 50, 180,
                 message="the 50 runs to complete")
    finally:
        for worker in workers:
            worker.stop()
    ordered = list(runs.order_by("event_id"))
    totals = [run.input["total"] for run in ordered]
    assert totals == list(range(2, 52))
    spans = []
    for run in ordered:
        steps = StepRun.objects.filter(run=run)
        spans.append((min(s.started_at for s in steps), max(s.finished_at for s in steps)))
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end  # never overlapping, and in the order of the saves
