"""Batches fan out one run per matching entity, in chunks, with progress."""

import json
import threading
import time

import pytest
from django.core.management import call_command
from django.db import OperationalError, connection, connections, transaction

from automation.models import Batch, Run
from automation.services import batches
from automation.services.batches import (
    batch_cancel,
    batch_create,
    batch_progress,
    batch_retry_failed,
)
from automation.store import get_store
from entities.models import Entity
from entities.services import entity_create

pytestmark = pytest.mark.django_db(transaction=True)


def make_orders(order_type, n, *, email=True, start=0):
    customer = {"name": "Ada", **({"email": "ada@example.com"} if email else {})}
    for i in range(start, start + n):
        entity_create(entity_type=order_type, reference=f"B-{i:05d}",
                      data={"customer": customer, "total": 10 + i})


@pytest.fixture
def record_process(make_process, order_type):
    return make_process([{"id": "a", "type": "function", "function": "test.record"}],
                        entity_type=order_type, slug="record")


def _fanned_out_in_chunks_of_4(monkeypatch, settings, order_type, process, *, queue: str):
    """10 orders and a batch over them, fanned out in chunks of 4 with its doorbells on a
    broker queue of the test's own; returns (that broker, the batch)."""
    from django_q.brokers import get_broker

    from automation.store import doorbell

    monkeypatch.setattr(batches, "CHUNK", 4)
    make_orders(order_type, 10)
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    broker = get_broker(f"{settings.Q_CLUSTER['name']}-{queue}")
    monkeypatch.setattr(doorbell, "_broker", lambda: broker)
    batch = batch_create(entity_type=order_type, process=process)
    batches.batch_fanout_run(batch.pk)
    return broker, batch


def test_batch_runs_every_matching_entity_once_across_chunks(order_type, record_process, monkeypatch,
                                                             calls):
    monkeypatch.setattr(batches, "CHUNK", 7)
    make_orders(order_type, 20)
    make_orders(order_type, 5, email=False, start=100)  # stay `received`: filtered out
    batch = batch_create(entity_type=order_type, process=record_process, filter={"status": "approved"})
    assert batch.total == 20
    batch.refresh_from_db()
    assert batch.created_runs == 20
    assert Run.objects.filter(batch=batch).values("entity").distinct().count() == 20
    progress = batch_progress(batch)
    assert progress | {"ratePerSecond": 0, "etaSeconds": None} == {
        "id": str(batch.pk), "status": "completed", "total": 20, "queued": 0, "running": 0,
        "done": 20, "failed": 0, "cancelled": 0, "percent": 100.0, "ratePerSecond": 0,
        "etaSeconds": None}
    assert len(calls) == 20


def test_retry_failed_reruns_only_the_failed(order_type, make_process, calls):
    make_orders(order_type, 6)
    process = make_process([
        {"id": "check", "type": "condition", "condition": "entity.data.total > 12", "next": "fail",
         "config": {"else": "ok"}},
        {"id": "fail", "type": "function", "function": "test.flaky", "config": {"params": {"failures": 1}}},
        {"id": "ok", "type": "function", "function": "test.record"}], slug="mixed")
    batch = batch_create(entity_type=order_type, process=process, filter={})
    progress = batch_progress(Batch.objects.get(pk=batch.pk))
    assert (progress["done"], progress["failed"]) == (3, 3)  # totals 10..15: three above 12
    calls.clear()  # the flaky function now succeeds: it failed once per run
    assert batch_retry_failed(batch=batch) == 3
    progress = batch_progress(Batch.objects.get(pk=batch.pk))
    assert (progress["done"], progress["failed"]) == (6, 0)
    assert [c[0] for c in calls] == ["fail"] * 3  # the completed runs were not touched


def test_cancelled_batch_stops_creating_runs(order_type, record_process, settings):
    make_orders(order_type, 3)
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    batch = batch_create(entity_type=order_type, process=record_process, filter={})
    batch_cancel(batch=batch)
    batches.batch_fanout_run(batch.pk)  # the worker picks the task up after the cancel
    assert not Run.objects.filter(batch=batch).exists()
    assert Batch.objects.get(pk=batch.pk).status == Batch.Status.CANCELLED


def test_process_entities_command_shows_progress_and_result(order_type, record_process, capsys):
    make_orders(order_type, 4)
    call_command("process_entities", "record", "--type", "order", "--filter", '{"status": "approved"}')
    out, err = capsys.readouterr()
    assert "4/4" in err
    assert json.loads(out.strip().splitlines()[-1])["done"] == 4


def test_run_process_command_runs_on_an_entity(order_type, record_process, capsys):
    make_orders(order_type, 1)
    call_command("run_process", "record", "--entity", Entity.objects.get().reference,
                 "--input", '{"x": 1}')
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "completed" and result["result"]["seen"] == {"x": 1}


def test_run_process_command_refuses_unknown_process():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="No process 'nope'"):
        call_command("run_process", "nope")


def test_fan_out_rings_each_created_step_once_through_the_broker(order_type, record_process,
                                                                 settings, monkeypatch):
    """Queued mode: a chunk's doorbells are sent together after its commit, one per
    `bell_steps()` of its steps (the continuation bound), each step in exactly one, as
    packages the workers can read (whichever broker this lane uses)."""
    from django_q.models import OrmQ
    from django_q.signing import SignedPackage

    from automation.models import StepRun
    from automation.store import doorbell

    settings.ENTITYFLOW_CONTINUE_MAX_STEPS = 3  # chunks of 4: doorbells of 3 and 1 steps
    broker, batch = _fanned_out_in_chunks_of_4(monkeypatch, settings, order_type,
                                               record_process, queue="batch-ring")
    if settings.Q_CLUSTER.get("redis"):
        payloads = broker.connection.lrange(broker.list_key, 0, -1)
        broker.connection.delete(broker.list_key)
    else:
        payloads = [row.payload for row in OrmQ.objects.filter(key=broker.list_key)]
    tasks = [SignedPackage.loads(p) for p in payloads]
    steps = set(StepRun.objects.filter(run__batch=batch).values_list("pk", flat=True))
    rung = [pk for t in tasks for pk in t["args"][0]]
    assert len(steps) == 10 and sorted(rung) == sorted(steps)
    assert sorted(len(t["args"][0]) for t in tasks) == [1, 1, 2, 3, 3]
    assert {t["func"] for t in tasks} == {doorbell.CHUNK_TASK}
    assert {t["args"][1] for t in tasks} == {"normal"}  # re-rung on the same queue


def test_a_batch_whose_fan_out_was_never_enqueued_is_enqueued_by_the_sweeper(
        order_type, record_process, settings):
    from datetime import timedelta

    from django.utils import timezone

    make_orders(order_type, 3)
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    batch = batch_create(entity_type=order_type, process=record_process)  # its task was lost
    Batch.objects.filter(pk=batch.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": True}
    assert batches.batches_sweep() == 1
    batch.refresh_from_db()
    assert Run.objects.filter(batch=batch).count() == 3
    assert batches.batches_sweep() == 0


def test_cancelling_a_finished_batch_is_a_conflict_and_changes_nothing(order_type,
                                                                      record_process):
    from automation.exceptions import BatchFinishedError

    make_orders(order_type, 3)
    batch = batch_create(entity_type=order_type, process=record_process, filter={})
    batch_progress(Batch.objects.get(pk=batch.pk))  # all three ran: completed
    finished = Batch.objects.get(pk=batch.pk)
    assert finished.status == Batch.Status.COMPLETED and finished.finished_at
    with pytest.raises(BatchFinishedError, match="completed"):
        batch_cancel(batch=finished)
    after = Batch.objects.get(pk=batch.pk)
    assert (after.status, after.finished_at) == (Batch.Status.COMPLETED, finished.finished_at)
    assert Run.objects.filter(batch=batch, status=Run.Status.CANCELLED).count() == 0


def test_cancelling_twice_is_a_conflict(order_type, record_process, settings):
    from automation.exceptions import BatchFinishedError

    make_orders(order_type, 2)
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    batch = batch_create(entity_type=order_type, process=record_process, filter={})
    first = batch_cancel(batch=batch)
    with pytest.raises(BatchFinishedError, match="cancelled"):
        batch_cancel(batch=batch)
    assert Batch.objects.get(pk=batch.pk).finished_at == first.finished_at


def test_the_rate_of_a_finished_batch_uses_its_finish_time(order_type, record_process):
    from datetime import timedelta

    from django.utils import timezone

    make_orders(order_type, 20)
    batch = batch_create(entity_type=order_type, process=record_process, filter={})
    batch_progress(Batch.objects.get(pk=batch.pk))
    long_ago = timezone.now() - timedelta(hours=1)
    Batch.objects.filter(pk=batch.pk).update(started_at=long_ago,
                                             finished_at=long_ago + timedelta(seconds=5))
    progress = batch_progress(Batch.objects.get(pk=batch.pk))
    assert progress["status"] == "completed"
    assert progress["ratePerSecond"] == 4.0  # 20 runs in 5 s, not 20 in an hour


def _doorbells(settings, broker) -> list[int]:
    """The step ids the broker's queue holds doorbells for (emptied as read)."""
    from django_q.signing import SignedPackage

    from automation.store import doorbell

    if settings.Q_CLUSTER.get("redis"):
        payloads = broker.connection.lrange(broker.list_key, 0, -1)
        broker.connection.delete(broker.list_key)
    else:  # the ORM broker's connection is its OrmQ rows, in the queue's database
        rows = broker.connection.filter(key=broker.list_key)
        payloads = [row.payload for row in rows]
        rows.delete()
    return [pk for p in payloads for pk in doorbell.steps_rung(SignedPackage.loads(p))]


def test_a_chunk_done_again_after_its_fan_out_was_lost_writes_no_duplicate(
        order_type, record_process, settings, monkeypatch):
    """A second delivery of the fan-out that read the batch's cursor before the first one
    committed (its worker was killed, or timed out, and the task came again) does every
    chunk again: the set-based statements write no run, no step and ring no doorbell a
    second time, and the runs are the ones the first delivery wrote, one per entity, with
    the key `batch:<batch>:<entity>`."""

    from automation.models import StepRun

    broker, batch = _fanned_out_in_chunks_of_4(monkeypatch, settings, order_type,
                                               record_process, queue="batch-redo")
    first_runs = dict(Run.objects.filter(batch=batch).values_list("entity_id", "pk"))
    first_steps = set(StepRun.objects.filter(run__batch=batch).values_list("pk", flat=True))
    assert sorted(_doorbells(settings, broker)) == sorted(first_steps)
    assert len(first_runs) == len(first_steps) == 10

    # the late delivery: the batch as it read it, before any chunk was committed
    Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.FANNING_OUT, cursor="")
    batches.batch_fanout_run(batch.pk)

    assert dict(Run.objects.filter(batch=batch).values_list("entity_id", "pk")) == first_runs
    assert set(StepRun.objects.filter(run__batch=batch).values_list("pk", flat=True)) == first_steps
    assert _doorbells(settings, broker) == []
    again = Batch.objects.get(pk=batch.pk)
    assert (again.status, again.created_runs) == (Batch.Status.RUNNING, 10)
    assert again.fanned_out_at is not None
    assert sorted(Run.objects.filter(batch=batch).values_list("idempotency_key", flat=True)) == \
        sorted(f"batch:{batch.pk}:{entity_id}" for entity_id in first_runs)
    step = StepRun.objects.filter(run__batch=batch).first()
    assert (step.step_id, step.step_type, step.status, step.input, step.attempt) == \
        ("a", "function", StepRun.Status.PENDING, {}, 0)


def test_a_chunk_is_only_the_filtered_entities_past_the_cursor(order_type, record_process,
                                                               monkeypatch):
    """The set-based chunk keeps the batch's filter and its cursor: an entity the filter
    leaves out (interleaved by primary key with those it keeps) or that an earlier chunk
    covered gets no run; each kept one gets exactly one."""
    monkeypatch.setattr(batches, "CHUNK", 3)
    make_orders(order_type, 8)
    make_orders(order_type, 6, email=False, start=100)  # stay `received`: filtered out
    batch = batch_create(entity_type=order_type, process=record_process,
                         filter={"status": "approved"})
    kept = set(Entity.objects.filter(entity_type=order_type, status="approved")
               .values_list("pk", flat=True))
    runs = list(Run.objects.filter(batch=batch).values_list("entity_id", flat=True))
    assert len(kept) == 8 and sorted(runs) == sorted(kept)
    assert Batch.objects.get(pk=batch.pk).created_runs == 8


def test_a_chunk_doorbell_runs_its_steps_once_and_yields_at_its_bound(
        order_type, record_process, settings, monkeypatch, calls):
    """The task of a chunk doorbell runs each of its steps as its own doorbell would
    (a second delivery finds them taken and runs nothing again); past its time bound it
    rings one doorbell for the steps it has not begun, on the same queue, and stops."""
    from automation import tasks
    from automation.models import StepRun

    broker, batch = _fanned_out_in_chunks_of_4(monkeypatch, settings, order_type,
                                               record_process, queue="batch-chunk")
    first_chunk = sorted(_doorbells(settings, broker))[:4]
    calls.clear()
    settings.ENTITYFLOW_CONTINUE_MAX_MS = 0  # the bound is reached after the first step
    tasks.steps_execute(first_chunk, "normal")
    assert StepRun.objects.get(pk=first_chunk[0]).status == "completed"
    assert StepRun.objects.filter(pk__in=first_chunk[1:], status="pending").count() == 3
    assert sorted(_doorbells(settings, broker)) == first_chunk[1:]  # one doorbell, re-rung
    settings.ENTITYFLOW_CONTINUE_MAX_MS = 60_000
    tasks.steps_execute(first_chunk, "normal")
    tasks.steps_execute(first_chunk, "normal")  # delivered again: every step is taken
    assert len(calls) == 4
    assert set(StepRun.objects.filter(pk__in=first_chunk).values_list("status", flat=True)) == {
        "completed"}


def test_the_steps_of_a_lost_chunk_doorbell_are_rung_by_the_sweeper(
        order_type, record_process, settings, monkeypatch):
    """The broker lost every chunk doorbell of the batch: the steps' rows are the truth,
    and the sweeper rings for each of them once its grace period has passed."""
    from datetime import timedelta

    from django.utils import timezone

    from automation.models import StepRun
    from automation.services.sweeper import steps_sweep

    broker, batch = _fanned_out_in_chunks_of_4(monkeypatch, settings, order_type,
                                               record_process, queue="batch-lost")
    steps = sorted(StepRun.objects.filter(run__batch=batch).values_list("pk", flat=True))
    assert sorted(_doorbells(settings, broker)) == steps  # read, and so lost
    assert steps_sweep(pending_grace_seconds=60) == 0  # not yet due: inside the grace
    StepRun.objects.filter(run__batch=batch).update(
        created_at=timezone.now() - timedelta(minutes=5))
    assert steps_sweep(pending_grace_seconds=60) == 10
    assert sorted(_doorbells(settings, broker)) == steps
    assert steps_sweep(pending_grace_seconds=60) == 0  # once per grace period


def test_a_batch_of_a_process_with_a_concurrency_rule_starts_through_its_gates(
        order_type, monkeypatch):
    """processLimit 2 over a batch of 5 entities: two runs start, three wait `pending`
    with the reason, as single starts would (store.gates); a chunk done again starts
    nothing twice; a run's end admits the next."""
    from automation.services.processes import process_save
    from automation.services.runs import run_cancel

    monkeypatch.setattr(batches, "CHUNK", 2)
    make_orders(order_type, 5)
    process = process_save(slug="gated-batch", name="Gated", entity_type=order_type, definition={
        "steps": [{"id": "hold", "type": "human", "config": {"approvers": ["ops@example.com"]}}],
        "triggers": [], "concurrency": {"limit": 1, "processLimit": 2}})
    batch = batch_create(entity_type=order_type, process=process)
    batch.refresh_from_db()
    runs = list(Run.objects.filter(batch=batch).order_by("created_at", "id"))
    assert (batch.created_runs, batch.status, len(runs)) == (5, Batch.Status.RUNNING, 5)
    assert [r.status for r in runs] == ["waiting"] * 2 + ["pending"] * 3
    assert {r.pending_reason for r in runs[2:]} == {
        "Waiting for a concurrency slot: processLimit 2 reached."}
    assert {r.idempotency_key for r in runs} == {
        f"batch:{batch.pk}:{r.entity_id}" for r in runs}

    Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.FANNING_OUT, cursor="")
    batches.batch_fanout_run(batch.pk)  # a second delivery of the fan-out
    assert Run.objects.filter(batch=batch).count() == 5
    assert Batch.objects.get(pk=batch.pk).created_runs == 5

    run_cancel(run=runs[0])
    assert Run.objects.get(pk=runs[2].pk).status == "waiting"
    assert Run.objects.filter(batch=batch, status="pending").count() == 2


def _batch_of_3_to_chunk(settings, order_type, process, status):
    """A batch over three new orders in `status`, as a chunk of its fan-out reads it, and
    the entities a chunk takes from; the fan-out task is not run (it is called here)."""
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    make_orders(order_type, 3)
    batch = batch_create(entity_type=order_type, process=process)
    Batch.objects.filter(pk=batch.pk).update(status=status)
    batch = Batch.objects.select_related("process__current_version").get(pk=batch.pk)
    return batch, batches.batch_entities(order_type, {}).values_list("pk", flat=True)


def test_a_fan_out_task_leaves_a_batch_another_task_holds(order_type, record_process, settings):
    """Only one fan-out task works on a batch (batches.FanoutLease): a second delivery
    while the first holds it writes nothing, and the sweeper leaves it alone; once the
    hold has run out (the first task's worker died) the sweeper enqueues the fan-out
    again and the task goes on from the cursor, then lets the batch go."""
    import uuid
    from datetime import timedelta

    from django.utils import timezone

    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    make_orders(order_type, 3)
    batch = batch_create(entity_type=order_type, process=record_process)
    held = {"status": Batch.Status.FANNING_OUT, "fanout_token": uuid.uuid4()}
    Batch.objects.filter(pk=batch.pk).update(
        **held, fanout_until=timezone.now() + timedelta(seconds=60))

    batches.batch_fanout_run(batch.pk)
    assert not Run.objects.filter(batch=batch).exists()
    assert batches.batches_sweep(older_than_seconds=0) == 0

    Batch.objects.filter(pk=batch.pk).update(fanout_until=timezone.now() - timedelta(seconds=1))
    assert batches.batches_sweep(older_than_seconds=0) == 1
    batches.batch_fanout_run(batch.pk)  # the task the sweeper enqueued
    done = Batch.objects.get(pk=batch.pk)
    assert (done.status, done.created_runs, Run.objects.filter(batch=batch).count()) == (
        Batch.Status.RUNNING, 3, 3)
    assert (done.fanout_token, done.fanout_until) == (None, None)
    assert batches.batches_sweep(older_than_seconds=0) == 0


def test_a_full_chunk_knows_whether_it_is_the_batchs_last(order_type, record_process,
                                                          settings):
    """A chunk of exactly the chunk size may be the last: the fan-out looks one entity
    past it (SQLite: when bounding the chunk; PostgreSQL: in the chunk's own statement),
    so the last chunk's commit also ends the fan-out (test_batch_fanout_end_worker.py)."""
    batch, entities = _batch_of_3_to_chunk(settings, order_type, record_process,
                                            Batch.Status.FANNING_OUT)
    entities = entities.order_by("pk")  # as the fan-out reads them
    first, rest = min(entities), entities.filter(pk__gt=min(entities))
    assert batches._next_chunk(entities, 2, load=False).last_one is False
    assert batches._next_chunk(rest, 2, load=False)[1:] == (max(entities), 2, True)
    assert batches._next_chunk(entities, 3, load=True).last_one is True
    if get_store().features.chunk_finds_itself:
        assert batches._create_chunk(batch, entities, 1) == (first, 1, False)
        assert batches._create_chunk(batch, rest, 2) == (max(entities), 2, True)
        again = Batch.objects.get(pk=batch.pk)
        assert (again.status, again.created_runs) == (Batch.Status.RUNNING, 3)
        # the moment its doorbells were sent too: written by the fan-out after the commit
        assert again.fanned_out_at is None


def test_a_chunk_of_a_batch_that_stopped_fanning_out_writes_nothing(order_type, record_process,
                                                                   settings):
    """A cancel (or pause) that commits after the fan-out looked at the batch and before
    a chunk moved the cursor: the chunk's transaction rolls back, so no run of it starts
    after the cancel has looked for runs to cancel, and a resume starts from the cursor."""
    batch, entities = _batch_of_3_to_chunk(settings, order_type, record_process,
                                            Batch.Status.CANCELLED)

    with pytest.raises(batches.ChunkStopped):
        batches._create_chunk(batch, entities, batches.CHUNK)

    assert not Run.objects.filter(batch=batch).exists()
    again = Batch.objects.get(pk=batch.pk)
    assert (again.cursor, again.created_runs) == ("", 0)


@pytest.mark.skipif(connection.vendor != "postgresql",
                    reason="chunks overlap where two connections may write at once")
def test_a_cancel_while_a_chunk_is_written_leaves_no_run_of_it_running(order_type,
                                                                      record_process, settings):
    """The race itself, on two connections: the cancel commits (and cancels the runs it
    finds) while a chunk's INSERT is done but not committed; the chunk then rolls back."""
    batch, entities = _batch_of_3_to_chunk(settings, order_type, record_process,
                                            Batch.Status.FANNING_OUT)

    def cancel_elsewhere(found):
        assert found == (max(entities), 3, True)  # the chunk's statements found it themselves

        def cancel():
            try:
                batch_cancel(batch=Batch.objects.get(pk=batch.pk))
            finally:
                connections.close_all()
        thread = threading.Thread(target=cancel)
        thread.start()
        thread.join(timeout=30)
        assert not thread.is_alive()

    with pytest.raises(batches.ChunkStopped):
        batches._create_chunk(batch, entities, batches.CHUNK, before_cursor=cancel_elsewhere)

    assert not Run.objects.filter(batch=batch).exclude(status__in=Run.FINISHED).exists()
    assert Batch.objects.get(pk=batch.pk).status == Batch.Status.CANCELLED


@pytest.mark.skipif(connection.vendor != "postgresql",
                    reason="chunks overlap where two connections may write at once")
def test_overlapped_chunks_commit_in_order_and_a_failed_one_stops_those_after_it(order_type):
    """OverlappedChunks on real connections: a chunk moves on past its statements only
    once the chunk before it has committed (it sees that chunk's row from its own
    connection), and when a chunk fails, the chunk after it rolls back, so what is
    committed is always the first chunks in order (the cursor never skips one)."""
    from entities.models import EntityType

    seen_by_second = []

    def chunk(key: str, *, fail: bool = False, check: str | None = None, slow: float = 0.0):
        def create(before_cursor):
            with transaction.atomic():
                EntityType.objects.create(key=key, name=key)
                if fail:
                    raise RuntimeError(f"{key} failed")
                before_cursor()
                if check:
                    seen_by_second.append(EntityType.objects.filter(key=check).exists())
                time.sleep(slow)  # a slow commit: what follows must wait for it
        return create

    with batches.OverlappedChunks() as chunks:
        chunks.write(chunk("first", slow=0.3))
        chunks.write(chunk("second", check="first"))
        assert chunks.finish()
    assert seen_by_second == [True]

    with batches.OverlappedChunks() as chunks, pytest.raises(RuntimeError, match="third failed"):
        chunks.write(chunk("third", fail=True))
        chunks.write(chunk("fourth"))
        chunks.finish()
    keys = set(EntityType.objects.filter(key__in=["first", "second", "third", "fourth"])
               .values_list("key", flat=True))
    assert keys == {"first", "second"}


@pytest.mark.skipif(connection.vendor != "postgresql",
                    reason="PostgreSQL's chunk statement makes its runs' ids")
def test_the_runs_of_a_chunk_have_time_ordered_ids(order_type, record_process, monkeypatch):
    """A chunk's run ids have the UUID version 7 layout (store.postgresql RUN_ID): the
    milliseconds of their creation in the first 48 bits, so a chunk's runs land at the
    right end of the indexes keyed by them, and random bits after: each is unique."""
    import uuid

    monkeypatch.setattr(batches, "CHUNK", 4)
    make_orders(order_type, 10)
    before = time.time()
    batch = batch_create(entity_type=order_type, process=record_process)
    after = time.time()
    ids = [uuid.UUID(str(pk)) for pk in Run.objects.filter(batch=batch).values_list("pk", flat=True)]
    assert len(set(ids)) == 10
    assert {(run_id.version, run_id.variant) for run_id in ids} == {(7, uuid.RFC_4122)}
    created_ms = [int(run_id.hex[:12], 16) for run_id in ids]
    assert all(before * 1000 - 1000 <= ms <= after * 1000 + 1000 for ms in created_ms)


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's one write lock")
def test_a_chunk_waits_for_the_write_lock_another_connection_holds_then_writes(
        order_type, record_process, settings):
    """On SQLite a chunk asks for the write lock again and again itself (batches'
    `_chunk_transaction`) instead of SQLite's own wait: while another connection holds
    the lock the chunk waits, once it is released the chunk is written, and the
    connection's busy timeout is what it was (also when the lock is never given: then
    the chunk fails as SQLite's wait fails, "database is locked", and writes nothing)."""
    import sqlite3

    batch, entities = _batch_of_3_to_chunk(settings, order_type, record_process,
                                            Batch.Status.FANNING_OUT)
    timeout = batches._busy_timeout(connection)
    assert timeout > 0
    holder = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None,
                             check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    released = threading.Event()

    def release():
        time.sleep(0.3)
        released.set()
        holder.execute("COMMIT")

    thread = threading.Thread(target=release)
    thread.start()
    try:
        found = batches._create_chunk(batch, entities, batches.CHUNK)
    finally:
        thread.join(timeout=30)
    assert released.is_set()  # it could not have written before
    assert found == (max(entities), 3, True)  # fewer than a chunk: the last one
    assert Run.objects.filter(batch=batch).count() == 3
    assert batches._busy_timeout(connection) == timeout

    batches._busy_timeout(connection, 200)  # a lock never given back: fails at the timeout
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(OperationalError, match="locked"):
            batches._create_chunk(batch, batches.batch_entities(order_type, {}).values_list(
                "pk", flat=True).filter(pk__gt=max(entities)), batches.CHUNK)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        batches._busy_timeout(connection, timeout)
    assert Run.objects.filter(batch=batch).count() == 3
