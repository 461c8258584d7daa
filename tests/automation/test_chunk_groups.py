"""A chunk doorbell claims its steps together and records its cheap steps together, with
their runs' ends, in one transaction (engine.chunks, store.grouped): the history is the
per-step path's, the writes do not grow with the chunk, a lost claim is not written
over, and the bound gives back what was claimed and not begun."""

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from automation import tasks
from automation.models import Run, StepRun
from automation.services import batches
from automation.services.batches import batch_create
from automation.store import get_store
from tests.automation.test_batches import _doorbells, make_orders

pytestmark = pytest.mark.django_db(transaction=True)

STEP_FIELDS = ("step_id", "scope", "index", "step_type", "status", "attempt", "key_attempt",
               "input", "output", "error", "state", "logs", "priority", "not_before")
RUN_FIELDS = ("status", "result", "error", "entity_id", "priority", "pending_reason")


def pure_process(make_process, order_type, slug: str, **params):
    return make_process([{"id": "a", "type": "function", "function": "test.pure",
                          "config": {"params": params}}], entity_type=order_type, slug=slug)


def fanned_out(monkeypatch, settings, order_type, process, *, queue: str, chunk: int = 8):
    """A batch of `process` over the orders, fanned out in chunks of `chunk`, its doorbells
    on a broker queue of the test's own: (that broker, the batch, its step ids in order)."""
    from django_q.brokers import get_broker

    from automation.store import doorbell

    monkeypatch.setattr(batches, "CHUNK", chunk)
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    broker = get_broker(f"{settings.Q_CLUSTER['name']}-{queue}")
    monkeypatch.setattr(doorbell, "_broker", lambda: broker)
    batch = batch_create(entity_type=order_type, process=process)
    batches.batch_fanout_run(batch.pk)
    steps = sorted(_doorbells(settings, broker))
    return broker, batch, steps


def histories(batch) -> dict[str, str]:
    """Each run's history keyed by its entity: its fields and its steps' fields, ids and
    times taken out."""
    out = {}
    for run in Run.objects.filter(batch=batch):
        assert run.started_at is not None and run.finished_at is not None
        steps = []
        for step_run in StepRun.objects.filter(run=run).order_by("step_id", "scope"):
            row = [getattr(step_run, f) for f in STEP_FIELDS]
            assert step_run.started_at and step_run.finished_at and step_run.claim
            steps.append(row)
        out[str(run.entity_id)] = json.dumps(
            [[getattr(run, f) for f in RUN_FIELDS], steps], sort_keys=True, default=str
        ).replace(str(run.pk), "RUN")
    return out


def test_a_chunk_recorded_together_leaves_the_per_step_paths_history(
        order_type, make_process, settings, monkeypatch, calls):
    make_orders(order_type, 10)
    settings.ENTITYFLOW_CONTINUE_MAX_STEPS = 50  # one doorbell per chunk
    alone = pure_process(make_process, order_type, "alone")
    together = pure_process(make_process, order_type, "together")
    _, alone_batch, alone_steps = fanned_out(monkeypatch, settings, order_type, alone,
                                             queue="alone")
    for step_run_id in alone_steps:  # each as its own doorbell would run it
        tasks.step_execute(step_run_id)
    _, batch, steps = fanned_out(monkeypatch, settings, order_type, together, queue="together")
    tasks.steps_execute(steps[:8], "normal")  # chunks of 8: 8 and 2
    tasks.steps_execute(steps[8:], "normal")
    assert len(calls) == 20
    assert histories(batch) == histories(alone_batch)
    assert set(Run.objects.filter(batch=batch).values_list("status", flat=True)) == {"completed"}
    result = Run.objects.filter(batch=batch).order_by("entity__reference").first().result
    assert result == {"ref": "B-00000", "attempt": 1}


def test_a_chunks_writes_do_not_grow_with_its_steps(order_type, make_process, settings,
                                                    monkeypatch, calls):
    """Per step, the per-step path writes a claim and a record (and on SQLite the run's
    `running` and its end): 8 steps are 16 or more writes there. Together: the first
    step's claim, the others' claim, and one record (the runs' locks, the step rows, the
    runs' ends), whatever the chunk's size."""
    make_orders(order_type, 8)
    settings.ENTITYFLOW_CONTINUE_MAX_STEPS = 50
    process = pure_process(make_process, order_type, "count")
    _, batch, steps = fanned_out(monkeypatch, settings, order_type, process, queue="count")
    with CaptureQueriesContext(connection) as queries:
        tasks.steps_execute(steps, "normal")
    writes = [q["sql"] for q in queries.captured_queries
              if any(word in q["sql"].upper().split(" ")[:4] for word in
                     ("UPDATE", "INSERT", "DELETE", "WITH"))]
    assert len(writes) <= 7, "\n".join(writes)
    assert Run.objects.filter(batch=batch, status="completed").count() == 8


def test_a_group_does_not_write_over_a_claim_it_lost(order_type, make_process, settings,
                                                     monkeypatch):
    """One step of a group was taken over meanwhile (its lease ran out, another worker
    claimed it): the group's record writes nothing of it, and records the others."""
    from automation.engine.executor import claim_group, grouped_outcome

    make_orders(order_type, 3)
    process = pure_process(make_process, order_type, "lost")
    _, batch, steps = fanned_out(monkeypatch, settings, order_type, process, queue="lost")
    store = get_store()
    claims = claim_group(store, steps)
    assert [c.step_run.pk for c in claims] == steps
    items = []
    for claim in claims:
        outcome, duration_ms, _ = grouped_outcome(store, claim, {})
        items.append((claim, outcome, duration_ms))
    taken = StepRun.objects.get(pk=steps[1])
    store.release(claims[1])  # given back, and claimed by someone else
    other = store.claim(steps[1], lease_seconds=60)
    assert other is not None and other.step_run.claim != taken.claim
    store.record_group(items)
    statuses = dict(StepRun.objects.filter(pk__in=steps).values_list("pk", "status"))
    assert statuses == {steps[0]: "completed", steps[1]: "running", steps[2]: "completed"}
    assert StepRun.objects.get(pk=steps[1]).claim == other.step_run.claim
    ends = dict(Run.objects.filter(batch=batch).values_list("steps__pk", "status"))
    assert ends == {steps[0]: "completed", steps[1]: "running", steps[2]: "completed"}


def test_a_chunk_past_its_bound_gives_back_what_it_claimed_and_did_not_begin(
        order_type, make_process, settings, monkeypatch, calls):
    """The second step takes longer than the bound: the first two are recorded, the two
    claimed with them and not begun are given back (pending, their attempt not counted)
    and rung for with one doorbell; a second delivery runs them once."""
    make_orders(order_type, 4)
    process = pure_process(make_process, order_type, "bound", seconds=0.4, slow="B-00001")
    broker, batch, steps = fanned_out(monkeypatch, settings, order_type, process,
                                      queue="bound")
    # in the orders' order, so the slow one is second (a chunk writes in entity key order)
    steps.sort(key=lambda pk: StepRun.objects.get(pk=pk).run.entity.reference)
    settings.ENTITYFLOW_CONTINUE_MAX_MS = 300  # passed during the second step's 0.4 s
    tasks.steps_execute(steps, "normal")
    rows = {s.pk: s for s in StepRun.objects.filter(pk__in=steps)}
    assert [rows[pk].status for pk in steps] == ["completed", "completed", "pending", "pending"]
    assert [rows[pk].attempt for pk in steps] == [1, 1, 0, 0]
    assert rows[steps[2]].claim is None and rows[steps[2]].started_at is None
    assert sorted(_doorbells(settings, broker)) == sorted(steps[2:])
    settings.ENTITYFLOW_CONTINUE_MAX_MS = 60_000
    tasks.steps_execute(steps[2:], "normal")
    tasks.steps_execute(steps[2:], "normal")  # delivered again: taken, nothing runs twice
    assert len(calls) == 4
    assert set(Run.objects.filter(batch=batch).values_list("status", flat=True)) == {"completed"}


def test_a_step_that_may_call_out_is_recorded_on_its_own(order_type, make_process, settings,
                                                        monkeypatch, calls):
    """`test.record` is not cheap: each step of its chunk is claimed and recorded alone,
    as its own doorbell would be."""
    make_orders(order_type, 3)
    process = make_process([{"id": "a", "type": "function", "function": "test.record"}],
                           entity_type=order_type, slug="calls-out")
    _, batch, steps = fanned_out(monkeypatch, settings, order_type, process, queue="out")
    tasks.steps_execute(steps, "normal")
    # a group's steps share its claim token: here each step was claimed on its own
    assert len(set(StepRun.objects.filter(pk__in=steps).values_list("claim", flat=True))) == 3
    assert Run.objects.filter(batch=batch, status="completed").count() == 3


def test_each_run_of_a_group_gets_its_run_end_hooks(order_type, make_process, settings,
                                                    monkeypatch, calls):
    """A webhook subscription to `workflow.completed`: every run the group ends gets its
    delivery, written in the group's transaction (one each, none for a subscription to
    other events)."""
    from automation.models import WebhookDelivery, WebhookSubscription

    make_orders(order_type, 5)
    completed = WebhookSubscription.objects.create(
        url="https://hooks.example.com/done", events=["workflow.completed"], secret_encrypted="x")
    WebhookSubscription.objects.create(url="https://hooks.example.com/failed",
                                       events=["workflow.failed"], secret_encrypted="x")
    process = pure_process(make_process, order_type, "hooked")
    _, batch, steps = fanned_out(monkeypatch, settings, order_type, process, queue="hooked")
    tasks.steps_execute(steps, "normal")
    runs = {str(pk) for pk in Run.objects.filter(batch=batch, status="completed")
            .values_list("pk", flat=True)}
    assert len(runs) == 5
    deliveries = list(WebhookDelivery.objects.values_list("subscription_id", "payload"))
    assert {subscription for subscription, _ in deliveries} == {completed.pk}
    assert sorted(payload["id"] for _, payload in deliveries) == sorted(runs)
    assert {payload["status"] for _, payload in deliveries} == {"completed"}
