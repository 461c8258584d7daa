"""PostgreSQL records most steps in one statement (automation.store.postgresql), and
dispatches most events in one (entities.outbox). Each must leave exactly what the
general way leaves, and give way to it whenever the run is no longer running, the claim
was lost, the run's end has a webhook to write, or a trigger's condition failed."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from automation.definitions.steps import Outcome
from automation.engine.executor import execute_step
from automation.functions import function
from automation.models import ProcessTrigger, Run, StepRun, WebhookDelivery
from automation.services import webhooks
from automation.services.processes import process_save, process_set_enabled
from automation.services.runs import run_cancel, run_start
from automation.store import Claim, get_store
from entities.models import EntityEvent
from entities.outbox import event_dispatch, event_publish
from entities.services import entity_create
from tests.factories import make_entity_type
from tests.integrations.fakes.echo import EchoServer
from tests.reliability.test_lost_work import lease_runs_out

pytestmark = [pytest.mark.requires_postgres, pytest.mark.django_db(transaction=True)]

THREE = [{"id": "a", "type": "function", "function": "noop", "next": "b"},
         {"id": "b", "type": "function", "function": "noop", "next": "c"},
         {"id": "c", "type": "function", "function": "noop"}]
FIELDS = ("step_id", "status", "attempt", "input", "output", "error", "state", "claim")


def history(run: Run) -> tuple:
    run.refresh_from_db()
    steps = [tuple(getattr(s, f) is not None if f == "claim" else getattr(s, f) for f in FIELDS)
             for s in StepRun.objects.filter(run=run).order_by("id")]
    return run.status, run.result, run.finished_at is not None, steps


def run_through(process, settings, *, one_statement: bool) -> tuple[tuple, int]:
    settings.ENTITYFLOW_ONE_STATEMENT_STEPS = one_statement
    with CaptureQueriesContext(connection) as queries:
        run, _ = run_start(process=process, trigger={"type": "manual"}, input={"n": 1})
    return history(run), len(queries)


def test_a_sequential_run_leaves_the_same_history_in_fewer_statements(settings):
    process = process_save(slug="three", name="Three", definition={"steps": THREE})
    general, general_queries = run_through(process, settings, one_statement=False)
    fast, fast_queries = run_through(process, settings, one_statement=True)
    assert fast == general
    assert fast[0] == Run.Status.COMPLETED and fast[1] == {"n": 1}
    assert fast_queries < general_queries


def test_the_end_of_a_run_still_writes_and_sends_its_webhook(settings):
    receiver = EchoServer().start()
    try:
        webhooks.webhook_subscription_create(url=f"{receiver.url}/hook", events=["*"],
                                             secret="whsec_0123456789abcdef0123", owner="t")
        process = process_save(slug="hooked", name="Hooked", definition={"steps": THREE})
        (status, *_), _ = run_through(process, settings, one_statement=True)
    finally:
        receiver.stop()
    assert status == Run.Status.COMPLETED
    [delivery] = WebhookDelivery.objects.all()
    assert delivery.event == "workflow.completed"
    assert delivery.status == WebhookDelivery.Status.DELIVERED
    [call] = receiver.calls
    assert call.json()["status"] == "completed"


def started(queued, slug: str) -> tuple[Run, Claim]:
    process = process_save(slug=slug, name=slug, definition={"steps": THREE})
    run, _ = run_start(process=process, trigger={"type": "manual"})
    return run, claim(StepRun.objects.get(run=run, step_id="a").pk)


def claim(step_run_id: int) -> Claim | None:
    return get_store().claim(step_run_id, lease_seconds=60)


def record(claim: Claim, output: dict) -> None:
    get_store().record(claim, Outcome("completed", output=output), duration_ms=1)


@function("test.plain-step")
def plain_step(ctx):
    """A plain Python function step, not marked cheap: it may call out."""
    return {"step": ctx.step_id}


def lease_updates(queries) -> list[str]:
    return [q["sql"] for q in queries
            if q["sql"].startswith('UPDATE "automation_steprun" SET "lease_expires_at"')]


@pytest.mark.parametrize(("function", "durable"), [("test.plain-step", True), ("noop", False)])
def test_a_step_that_may_call_out_is_claimed_by_a_commit_that_waits_for_the_disk(
        queued, function, durable):
    """Before a step that may call out runs, everything its run wrote must be on disk
    (docs/operating.md, "Commits and the disk"): its claim from the doorbell is then a
    commit that waits for the disk, and no second statement flushes it; a cheap step's
    claim skips the flush. Both leave the same history."""
    steps = [{**step, "function": function} for step in THREE]
    process = process_save(slug=f"claimed-{function.replace('.', '-')}", name="C",
                           definition={"steps": steps})
    histories = []
    for n in range(2):  # the first run tells the worker what kind of step comes next
        run, _ = run_start(process=process, trigger={"type": "manual"}, input={"n": n})
        with CaptureQueriesContext(connection) as queries:
            execute_step(StepRun.objects.get(run=run, step_id="a").pk)
        histories.append(history(run)[0])
    # the claim is the only statement that may skip the flush (each record is flushed)
    relaxed = [q["sql"] for q in queries if q["sql"].startswith("SET LOCAL synchronous_commit")]
    assert len(relaxed) == (0 if durable else 1)
    assert lease_updates(queries) == []
    assert histories == [Run.Status.COMPLETED] * 2


def test_a_relaxed_claim_is_flushed_before_a_step_that_may_call_out(queued):
    """A claim that skipped the flush (the worker's last step was cheap) is made durable
    by the lease's ordinary commit before the step runs."""
    store = get_store()
    run, relaxed = started(queued, "flushed-later")
    assert store.must_flush_before(relaxed, cheap=False)
    assert not store.must_flush_before(relaxed, cheap=True)
    lease_runs_out(relaxed.step_run)
    durable = store.claim(relaxed.step_run.pk, lease_seconds=60, durable=True)
    assert durable.reclaimed and not store.must_flush_before(durable, cheap=False)


def test_a_step_finishing_after_its_run_was_cancelled_starts_nothing(queued):
    run, step = started(queued, "cancelled")
    run_cancel(run=run)
    record(step, {"late": True})
    assert StepRun.objects.get(pk=step.step_run.pk).status == StepRun.Status.CANCELLED
    assert not StepRun.objects.filter(run=run, step_id="b").exists()
    assert Run.objects.get(pk=run.pk).status == Run.Status.CANCELLED


def test_a_worker_whose_claim_was_taken_over_records_nothing(queued):
    run, first = started(queued, "taken-over")
    lease_runs_out(first.step_run)
    second = claim(first.step_run.pk)
    assert second is not None and second.reclaimed
    record(first, {"from": "first"})
    row = StepRun.objects.get(pk=first.step_run.pk)
    assert row.status == StepRun.Status.RUNNING and row.claim == second.step_run.claim
    assert not StepRun.objects.filter(run=run, step_id="b").exists()
    record(second, {"from": "second"})
    [successor] = StepRun.objects.filter(run=run, step_id="b")
    assert successor.input == {"from": "second"}
    execute_step(successor.pk)
    execute_step(StepRun.objects.get(run=run, step_id="c").pk)
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED and run.result == {"from": "second"}


def synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


def test_commits_that_skip_the_disk_flush_do_not_change_the_connection(queued):
    """The engine's bookkeeping commits without waiting for the disk, for that one
    transaction: whatever the connection does next (an API trigger, an entity save)
    is flushed as usual."""
    run, step = started(queued, "relaxed")
    assert synchronous_commit() == "on"
    record(step, {"x": 1})
    assert StepRun.objects.get(run=run, step_id="b").input == {"x": 1}
    assert synchronous_commit() == "on"


@pytest.mark.parametrize("relaxed", [True, False])
def test_runs_are_the_same_with_every_commit_flushed(settings, relaxed):
    settings.ENTITYFLOW_RELAXED_COMMITS = relaxed
    process = process_save(slug=f"flushed-{relaxed}", name="F", definition={"steps": THREE})
    (status, result, finished, steps), _ = run_through(process, settings, one_statement=True)
    assert (status, result, finished) == (Run.Status.COMPLETED, {"n": 1}, True)
    assert [s[1] for s in steps] == [StepRun.Status.COMPLETED] * 3


# --- The event dispatch in one statement (entities.outbox, runs.run_start_statement) ---

PLACED = {"type": "event", "config": {"eventType": "order.placed"}}


def dispatched(settings, *, one_statement: bool, total: int = 1) -> tuple:
    settings.ENTITYFLOW_ONE_STATEMENT_STEPS = one_statement
    with CaptureQueriesContext(connection) as queries:
        event = event_publish(type="order.placed", data={"total": total}, source="shop")
    event.refresh_from_db()
    return event, Run.objects.filter(event=event).first(), len(queries)


def test_an_event_dispatched_in_one_statement_starts_the_same_run(settings, queued):
    process = process_save(slug="placed", name="Placed",
                           definition={"steps": THREE, "triggers": [PLACED]})
    general_event, general, general_queries = dispatched(settings, one_statement=False)
    fast_event, fast, fast_queries = dispatched(settings, one_statement=True)
    for field in ("process_id", "version_id", "input", "status", "entity_id", "batch_id"):
        assert getattr(fast, field) == getattr(general, field)
    assert fast.trigger["triggerId"] == general.trigger["triggerId"]
    assert fast.trigger["event"] == {**general.trigger["event"], "id": fast_event.pk,
                                     "occurredAt": fast_event.occurred_at.isoformat()}
    assert fast.idempotency_key == f"event:{fast_event.pk}:process:{process.pk}"
    [general_step], [fast_step] = (list(StepRun.objects.filter(run=r)) for r in (general, fast))
    assert ((fast_step.step_id, fast_step.status, fast_step.input, fast_step.attempt)
            == (general_step.step_id, general_step.status, general_step.input,
                general_step.attempt) == ("a", StepRun.Status.PENDING, {"total": 1}, 0))
    assert general_event.dispatched_at and fast_event.dispatched_at
    assert queued == [general_step.pk, fast_step.pk]  # each rung once, after its commit
    assert fast_queries < general_queries


def test_an_event_already_dispatched_is_not_dispatched_again(settings, queued):
    process_save(slug="placed", name="Placed", definition={"steps": THREE, "triggers": [PLACED]})
    event, run, _ = dispatched(settings, one_statement=True)
    assert event_dispatch(event.pk, event=event) is False  # the claim is lost: nothing written
    assert list(Run.objects.filter(event=event)) == [run]
    assert queued == [StepRun.objects.get(run=run).pk]


def test_a_failed_condition_still_counts_its_skip(settings, queued):
    guarded = {**PLACED, "condition": "event.data.total > 0"}
    process = process_save(slug="guarded", name="Guarded",
                           definition={"steps": THREE, "triggers": [guarded]})
    _, skipped, _ = dispatched(settings, one_statement=True, total=0)
    _, started, _ = dispatched(settings, one_statement=True, total=5)
    assert skipped is None and started.input == {"total": 5}
    assert ProcessTrigger.objects.get(process=process).skipped_count == 1


def test_a_save_dispatched_in_one_statement_leaves_the_commit_setting_alone(settings, queued):
    settings.ENTITYFLOW_ONE_STATEMENT_STEPS = True
    entity_type = make_entity_type()
    created = {"type": "event", "config": {"eventType": "entity.created",
                                           "entityType": entity_type.key}}
    process_save(slug="on-create", name="On create",
                 definition={"steps": THREE, "triggers": [created]})
    entity = entity_create(entity_type=entity_type, reference="R-1", data={"n": 1})
    run = Run.objects.get(entity=entity)
    assert (run.status, run.input["n"]) == (Run.Status.PENDING, 1)
    assert EntityEvent.objects.get(entity=entity).dispatched_at is not None
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "on"


def test_a_process_disabled_in_the_saves_own_transaction_starts_nothing(settings, queued):
    """The one statement is built when the event is written; disabling the process later
    in the same transaction must still stop the run, as it does the general way."""
    settings.ENTITYFLOW_ONE_STATEMENT_STEPS = True
    process = process_save(slug="placed", name="Placed",
                           definition={"steps": THREE, "triggers": [PLACED]})
    before = event_publish(type="order.placed", data={"total": 1}, source="shop")
    [started] = Run.objects.filter(event=before)
    with transaction.atomic():
        process_set_enabled(process=process, enabled=False)
        event = event_publish(type="order.placed", data={"total": 2}, source="shop")
    event.refresh_from_db()
    assert event.dispatched_at is not None
    assert not Run.objects.filter(event=event).exists()
    assert queued == [StepRun.objects.get(run=started).pk]


def test_the_dispatch_is_planned_once_per_connection_and_survives_losing_the_plan(settings,
                                                                                 queued):
    """The dispatch statement is PREPAREd on first use; a connection that loses it (a
    pooler, DISCARD ALL) runs it unprepared from then on, losing no event."""
    settings.ENTITYFLOW_ONE_STATEMENT_STEPS = True
    process_save(slug="placed", name="Placed", definition={"steps": THREE, "triggers": [PLACED]})

    def prepared_here() -> list[str]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT statement FROM pg_prepared_statements")
            return [row[0] for row in cursor.fetchall()]

    first = event_publish(type="order.placed", data={"total": 1}, source="shop")
    [statement] = prepared_here()
    assert "entities_entityevent" in statement and "automation_run" in statement
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    second = event_publish(type="order.placed", data={"total": 2}, source="shop")
    third = event_publish(type="order.placed", data={"total": 3}, source="shop")
    runs = [Run.objects.get(event=event) for event in (first, second, third)]
    assert [run.input["total"] for run in runs] == [1, 2, 3]
    assert prepared_here() == []  # no longer prepared on this connection
    assert len(queued) == 3


def test_the_end_of_a_run_no_process_step_started_does_not_look_at_other_runs(settings):
    """A run that is nobody's child resumes no parent: its one-statement end does not ask
    whether any child run is active anywhere (a query over every active run, which a
    batch of 100,000 made cost 21 ms per end); a child's end still does, and resumes its
    parent (tests/automation/test_subprocesses.py)."""
    process = process_save(slug="three", name="Three", definition={"steps": THREE})
    settings.ENTITYFLOW_ONE_STATEMENT_STEPS = True
    with CaptureQueriesContext(connection) as queries:
        run, _ = run_start(process=process, trigger={"type": "manual"}, input={"n": 1})
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED
    ends = [q["sql"] for q in queries  # the statement, as prepared (then executed)
            if q["sql"].startswith("PREPARE") and "finished AS (" in q["sql"]]
    assert len(ends) == 1  # the run ended in one statement ...
    assert "parent_step_run_id" not in ends[0]  # ... that looked at no other run
