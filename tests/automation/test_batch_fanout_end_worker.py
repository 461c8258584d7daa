"""A batch's fan-out ends with its last chunk: the commit that writes the batch's last
runs also marks it fanned out (`running`), so a worker stopped right after that commit
cannot leave a batch whose runs all exist, and finish, still `fanning_out` for ever
(docs/user-guide/batches.md, "How a chunk is written"). Real worker processes; the batch
is rate-limited to one run per chunk, so the fan-out waits between chunks, and the
worker is killed as soon as the last run exists, while an earlier fan-out still waited
before it looked for a next chunk."""

import pytest

from automation.models import Batch
from automation.services.batches import batch_create, batch_rerun_create, batches_sweep
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


def noop_batch(order_type, entities: int, rate: float) -> Batch:
    """A rate-limited batch of a one-step `noop` process over `entities` new orders
    (references K-0, K-1, …)."""
    for i in range(entities):
        entity_create(entity_type=order_type, reference=f"K-{i}",
                      data={"customer": {"name": "Ada"}, "total": i})
    process = process_save(slug="note", name="Note", entity_type=order_type, definition={
        "steps": [{"id": "a", "type": "function", "function": "noop"}]})
    return batch_create(entity_type=order_type, process=process, rate_per_second=rate)


def test_an_entity_batch_is_fanned_out_in_its_last_chunks_commit(order_type, queued_mode,
                                                                  tmp_path):
    batch = noop_batch(order_type, ITEMS, RATE)

    batch = killed_after_its_last_run(batch, tmp_path)

    assert (batch.status, batch.created_runs) == (Batch.Status.RUNNING, ITEMS)


def test_a_rerun_batch_is_fanned_out_with_its_last_rerun(effects, queued_mode, tmp_path):
    import tests.automation.worker_functions  # noqa: F401

    process = process_save(slug="ship", name="Ship", definition={"steps": [
        {"id": "a", "type": "function", "function": "worker.effect", "next": "b"},
        {"id": "b", "type": "function", "function": "worker.effect"}]})
    failed_runs(process, ITEMS)
    batch = batch_rerun_create(process=process, filter={"failedAt": "b"}, rate_per_second=RATE)

    batch = killed_after_its_last_run(batch, tmp_path)

    assert (batch.status, batch.created_runs) == (Batch.Status.RUNNING, ITEMS)


def test_a_fan_out_whose_worker_died_is_started_again_by_the_sweeper(order_type, queued_mode,
                                                                     tmp_path):
    """The worker fanning a batch out is SIGKILLed half-way: its hold on the batch runs
    out (2 s here) and the sweeper starts the fan-out again, which goes on from the
    cursor: every entity gets its one run and the batch ends its fan-out."""
    entities = 12
    batch = noop_batch(order_type, entities, 4.0)
    first = Worker(tmp_path / "worker-1.log", ENTITYFLOW_FANOUT_LEASE_SECONDS="2")
    try:
        wait_for(lambda: batch.runs.count() >= 3, 60, interval=0.01, message="3 runs")
    finally:
        first.kill()
    died = Batch.objects.get(pk=batch.pk)
    assert died.status == Batch.Status.FANNING_OUT and died.fanout_until is not None
    assert batch.runs.count() < entities

    second = Worker(tmp_path / "worker-2.log")
    try:
        def swept_and_fanned_out() -> bool:
            batches_sweep(older_than_seconds=0)
            return Batch.objects.get(pk=batch.pk).status == Batch.Status.RUNNING
        wait_for(swept_and_fanned_out, 60, interval=0.5, message="the fan-out to end")
    finally:
        second.stop()

    done = Batch.objects.get(pk=batch.pk)
    assert done.created_runs == batch.runs.count() == entities
    assert sorted(batch.runs.values_list("entity__reference", flat=True)) == sorted(
        f"K-{i}" for i in range(entities))
    assert (done.fanout_token, done.fanout_until) == (None, None)
