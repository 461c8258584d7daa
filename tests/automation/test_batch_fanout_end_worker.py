"""A batch's fan-out ends with its last chunk: the commit that writes the batch's last
runs also marks it fanned out (`running`), so a worker stopped right after that commit
cannot leave a batch whose runs all exist, and finish, still `fanning_out` for ever
(docs/user-guide/batches.md, "How a chunk is written"). Real worker processes; the batch
is rate-limited to one run per chunk, so the fan-out waits between chunks, and the
worker is killed as soon as the last run exists, while an earlier fan-out still waited
before it looked for a next chunk."""

import pytest

from automation.models import Batch
from automation.services.batches import batch_create, batch_rerun_create
from automation.services.processes import process_save
from entities.services import entity_create
from tests.automation.test_bulk_rerun_worker import failed_runs
from tests.worker import Worker, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ITEMS = 5
RATE = 2.0  # a run a chunk, half a second apart


def killed_after_its_last_run(batch: Batch, tmp_path) -> Batch:
    """Let a worker fan `batch` out; SIGKILL it the moment the last run exists."""
    worker = Worker(tmp_path / "worker.log")
    try:
        wait_for(lambda: batch.runs.count() >= ITEMS, 60, interval=0.01,
                 message="the batch's last run")
    finally:
        worker.kill()
    return Batch.objects.get(pk=batch.pk)


def test_an_entity_batch_is_fanned_out_in_its_last_chunks_commit(order_type, queued_mode,
                                                                  tmp_path):
    for i in range(ITEMS):
        entity_create(entity_type=order_type, reference=f"F-{i}", data={"customer": {"name": "Ada"}, "total": i})
    process = process_save(slug="note", name="Note", entity_type=order_type, definition={
        "steps": [{"id": "a", "type": "function", "function": "noop"}]})
    batch = batch_create(entity_type=order_type, process=process, rate_per_second=RATE)

    batch = killed_after_its_last_run(batch, tmp_path)

    assert (batch.status, batch.created_runs) == (Batch.Status.RUNNING, ITEMS)
    assert batch.fanned_out_at is not None


def test_a_rerun_batch_is_fanned_out_with_its_last_rerun(effects, queued_mode, tmp_path):
    import tests.automation.worker_functions  # noqa: F401

    process = process_save(slug="ship", name="Ship", definition={"steps": [
        {"id": "a", "type": "function", "function": "worker.effect", "next": "b"},
        {"id": "b", "type": "function", "function": "worker.effect"}]})
    failed_runs(process, ITEMS)
    batch = batch_rerun_create(process=process, filter={"failedAt": "b"}, rate_per_second=RATE)

    batch = killed_after_its_last_run(batch, tmp_path)

    assert (batch.status, batch.created_runs) == (Batch.Status.RUNNING, ITEMS)
    assert batch.fanned_out_at is not None
