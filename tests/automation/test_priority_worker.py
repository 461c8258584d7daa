"""Priority with a real qcluster (ORM broker on SQLite, Redis on the PostgreSQL lane): a
high-priority run started while a low-priority batch of 20,000 entities fills the queue
is taken before the batch's queued doorbells (docs/user-guide/priority.md)."""

import pytest

from automation.models import ApiProcess, Batch, Run, StepRun
from automation.services.batches import batch_cancel, batch_create
from automation.services.processes import process_save
from automation.services.runs import run_start
from automation.store import doorbell
from automation.store.doorbell import queued_steps
from entities.demo import order_reference
from entities.models import Entity
from tests.worker import Worker, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

TOTAL = 20_000
# Steps per chunk doorbell of the batch (the continuation bound, store.doorbell).
BELL = 2
# What may run between the high run's start and its first claim: the doorbells each
# worker's pusher had already taken (django-q2's queue_limit, workers² = 4), one per
# worker (2) and one in the pusher's hand, each a chunk doorbell of BELL steps, and the
# steps claimed while the start was being written; far below the thousands queued.
FEW_STEPS = 7 * BELL + 5


@pytest.fixture
def many_orders(order_type):
    """Written straight to the table (no services, no events): seconds, not minutes."""
    Entity.objects.bulk_create(
        (Entity(entity_type=order_type, reference=order_reference(n), status="approved",
                data={"customer": {"name": "Bulk"}, "total": 1}) for n in range(1, TOTAL + 1)),
        batch_size=5000)


def test_high_priority_run_is_taken_before_a_low_priority_batch_of_20000(
        order_type, many_orders, effects, queued_mode, tmp_path):
    import tests.automation.worker_functions  # noqa: F401  (registers them here too)

    one_step = {"steps": [{"id": "touch", "type": "function", "function": "worker.slow",
                           "config": {"params": {"seconds": 0.002}}}]}
    bulk = process_save(slug="bulk", name="Bulk", entity_type=order_type,
                        definition={**one_step, "priority": "normal"})
    urgent = process_save(slug="urgent", name="Urgent",
                          definition={**one_step, "priority": "high"})
    worker = Worker(tmp_path / "worker.log", ENTITYFLOW_CONTINUE_MAX_STEPS=str(BELL))
    try:
        batch = batch_create(entity_type=order_type, process=bulk, priority="low")
        # the batch's doorbells fill the queue and the worker is taking them
        wait_for(lambda: StepRun.objects.filter(run__batch=batch, status="completed").count()
                 >= 100 and queued_steps() >= 2000, 300, interval=0.2,
                 message="the batch to be under way with doorbells queued")
        queued_before = queued_steps()
        high, _ = run_start(process=ApiProcess.objects.get(pk=urgent.pk),
                            trigger={"type": "manual"})
        first = wait_for(lambda: StepRun.objects.filter(run=high).exclude(
            started_at=None).first(), 60, interval=0.05, message="the high run's first claim")
        high.refresh_from_db()
        waited = (first.started_at - high.created_at).total_seconds()
        between = StepRun.objects.filter(run__batch=batch, started_at__gt=high.created_at,
                                         started_at__lt=first.started_at).count()
        queued_after = queued_steps()
        batch_cancel(batch=Batch.objects.get(pk=batch.pk))
    finally:
        worker.stop()
        # the batch's doorbells left in the queue: a Redis queue outlives the test's
        # database, and the sweeper of later tests counts it
        doorbell._broker().purge_queue()
    print(f"\nhigh run claimed {waited * 1000:.0f} ms after its start; {between} low steps "
          f"claimed in between; {queued_before} steps queued before, {queued_after} after")
    assert high.priority == "high" and first.priority == "high"
    assert Run.objects.filter(batch=batch).exclude(priority="low").count() == 0
    assert queued_after >= 1000  # the high run did not wait for the queue to drain
    # What the mechanism promises: only the few doorbells already in the workers' hands
    # ran first. The time (within 1 s on an idle machine: docs/user-guide/priority.md) is
    # printed, not asserted: wall-clock bounds in tests fail on a loaded machine.
    assert between <= FEW_STEPS
