"""An event that starts one process in the plain way is dispatched in the save's own
transaction (entities.outbox `with_save`, automation.triggers.events.event_with_save;
on PostgreSQL the dispatch's one statement, `Offer.with_save`):
the event written already dispatched, the run and its first step with it, only the
doorbell after the commit. It must leave what the dispatch after the commit leaves, roll
back with the save, and give way to that dispatch whenever it cannot say everything it
would (a condition that fails, a paused process, a process changed in the same
transaction, a definition that cannot be read), never failing the save."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from automation.definitions.scope import event_scope
from automation.models import HeldStart, ProcessTrigger, ProcessVersion, Run, StepRun
from automation.services.breaker import process_pause
from automation.services.processes import process_save, process_set_enabled
from automation.store import graphs
from automation.store.doorbell import queue_broker
from entities import outbox
from entities.models import EntityEvent
from entities.outbox import events_sweep
from entities.services import entity_create, entity_update
from tests.factories import make_entity_type

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True, params=["portable", "one statement"])
def store_kind(request, settings):
    """Both ways of writing the run with the save: the portable store's (SQLite's, and
    PostgreSQL's with its one-statement store off), which writes the event dispatched
    and then the run in a savepoint; and PostgreSQL's own store, whose one dispatch
    statement (the event's claim, the run, its first step) runs inside the save's
    transaction in a savepoint sent with it (entities.outbox `Offer.with_save`)."""
    if request.param == "one statement" and connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's own store")
    settings.ENTITYFLOW_ONE_STATEMENT_STEPS = request.param == "one statement"

STEPS = [{"id": "a", "type": "function", "function": "noop", "next": "b"},
         {"id": "b", "type": "function", "function": "noop"}]


@pytest.fixture
def queue(queued_mode):
    """Doorbells go to the real broker and stay there (no worker runs)."""
    broker = queue_broker()
    broker.purge_queue()
    yield broker
    broker.purge_queue()


def updated_process(entity_type, *, condition: str = "", slug: str = "on-update"):
    trigger = {"type": "event", "config": {"eventType": "entity.updated",
                                           "entityType": entity_type.key}}
    if condition:
        trigger["condition"] = condition
    return process_save(slug=slug, name="On update",
                        definition={"steps": STEPS, "triggers": [trigger]})


def saved(entity, data: dict) -> tuple[EntityEvent, Run | None, int]:
    """Update `entity`; its event, the run it started, and how many statements the
    default database ran after the save's commit."""
    committed = []
    with CaptureQueriesContext(connection) as queries:
        with transaction.atomic():
            # registered first, so it runs at the commit itself, before what the save left
            transaction.on_commit(lambda: committed.append(len(queries.captured_queries)))
            entity_update(entity=entity, data=data)
    event = EntityEvent.objects.filter(entity=entity).order_by("-id").first()
    return event, Run.objects.filter(event=event).first(), len(queries) - committed[0]


def test_the_run_is_written_with_the_save_and_only_the_doorbell_after_it(queue):
    entity_type = make_entity_type()
    process = updated_process(entity_type)
    entity = entity_create(entity_type=entity_type, reference="R-1", data={"n": 0})
    queue.purge_queue()  # the create's event starts nothing (it is not an update)

    event, run, after_commit = saved(entity, {"n": 1})

    assert after_commit == 0  # the claim, the run and its step were in the save's commit
    assert event.dispatched_at is not None
    assert (run.process_id, run.status, run.input) == (process.pk, Run.Status.PENDING, {"n": 1})
    [step] = StepRun.objects.filter(run=run)
    assert (step.step_id, step.status) == ("a", StepRun.Status.PENDING)
    assert queue.queue_size() == 1  # rung once, after the commit


def test_it_leaves_the_run_the_dispatch_after_the_commit_leaves(queue, dispatched_events):
    """A second interested subscriber (the test's recorder) sends the same event the
    general way, after the commit: the two runs must be alike but for the event."""
    entity_type = make_entity_type()
    process = updated_process(entity_type)
    entity = entity_create(entity_type=entity_type, reference="R-1", data={"n": 0})

    general_event, general, general_after = saved(entity, {"n": 1})
    outbox.unsubscribe("tests.recorder")
    fast_event, fast, fast_after = saved(entity, {"n": 2})

    assert general_after > 0 and fast_after == 0
    for field in ("process_id", "version_id", "status", "entity_id", "priority", "batch_id",
                  "parameters", "concurrency_key", "parent_run_id"):
        assert getattr(fast, field) == getattr(general, field)
    assert (general.input, fast.input) == ({"n": 1}, {"n": 2})
    assert fast.trigger == {**general.trigger, "event": event_scope(fast_event)}
    assert general.trigger["event"] == event_scope(general_event)
    assert (general.idempotency_key, fast.idempotency_key) == (
        f"event:{general_event.pk}:process:{process.pk}",
        f"event:{fast_event.pk}:process:{process.pk}")
    [general_step], [fast_step] = (list(StepRun.objects.filter(run=r)) for r in (general, fast))
    for field in ("step_id", "step_type", "status", "attempt", "scope", "priority"):
        assert getattr(fast_step, field) == getattr(general_step, field)
    assert general_event.dispatched_at and fast_event.dispatched_at
    assert queue.queue_size() == 2


def test_a_rolled_back_save_leaves_no_event_no_run_and_no_doorbell(queue):
    entity_type = make_entity_type()
    updated_process(entity_type)
    entity = entity_create(entity_type=entity_type, reference="R-1", data={"n": 0})
    queue.purge_queue()

    with pytest.raises(RuntimeError), transaction.atomic():
        entity_update(entity=entity, data={"n": 1})
        assert Run.objects.count() == 1  # written with the save ...
        raise RuntimeError("the caller failed after saving")

    assert not EntityEvent.objects.filter(type="entity.updated").exists()
    assert not Run.objects.exists() and not StepRun.objects.exists()  # ... and gone with it
    assert queue.queue_size() == 0


def test_a_definition_that_cannot_be_read_does_not_fail_the_save(queue, caplog):
    """The run cannot be built: the save commits, its event stays undispatched (the
    dispatch after the commit fails and logs, as it did before), and once the
    definition is readable again the sweeper starts the run: nothing lost."""
    entity_type = make_entity_type()
    process = updated_process(entity_type)
    entity = entity_create(entity_type=entity_type, reference="R-1", data={"n": 0})
    version = ProcessVersion.objects.get(pk=process.current_version_id)
    ProcessVersion.objects.filter(pk=version.pk).update(
        definition={**version.definition, "steps": "not a list of steps"})
    graphs._graph.cache_clear()

    event, run, _ = saved(entity, {"n": 1})

    entity.refresh_from_db()
    assert entity.data == {"n": 1} and run is None
    assert event.dispatched_at is None
    assert "the sweeper will retry it" in caplog.text
    ProcessVersion.objects.filter(pk=version.pk).update(definition=version.definition)
    graphs._graph.cache_clear()
    assert events_sweep(older_than_seconds=0) == 1
    assert Run.objects.filter(event=event, process=process).count() == 1


def test_a_condition_that_fails_counts_its_skip_as_before(queue):
    entity_type = make_entity_type()
    process = updated_process(entity_type, condition="event.data.n > 5")

    entity = entity_create(entity_type=entity_type, reference="R-1", data={"n": 0})
    event, run, after_commit = saved(entity, {"n": 1})
    assert run is None and after_commit > 0  # the general way, after the commit
    event.refresh_from_db()
    assert event.dispatched_at is not None and event.skipped[0]["trigger"] == \
        ProcessTrigger.objects.get(process=process).pk
    assert ProcessTrigger.objects.get(process=process).skipped_count == 1

    event, run, after_commit = saved(entity, {"n": 6})
    assert run is not None and after_commit == 0


def test_a_paused_process_holds_the_start(queue):
    entity_type = make_entity_type()
    process = updated_process(entity_type)
    entity = entity_create(entity_type=entity_type, reference="R-1", data={"n": 0})
    process_pause(process=process, reason="maintenance")

    event, run, _ = saved(entity, {"n": 1})

    assert run is None
    [held] = HeldStart.objects.filter(process=process)
    assert (held.event_id, held.status) == (event.pk, HeldStart.Status.HELD)
    event.refresh_from_db()
    assert event.dispatched_at is not None


def test_a_process_disabled_earlier_in_the_same_transaction_starts_nothing(queue):
    """This process's trigger index learns of the change only at the commit: the save
    must not start the run from the index as it was."""
    entity_type = make_entity_type()
    process = updated_process(entity_type)
    entity = entity_create(entity_type=entity_type, reference="R-1", data={"n": 0})
    entity_update(entity=entity, data={"n": 1})  # the index is built, the process in it
    assert Run.objects.filter(process=process).count() == 1

    with transaction.atomic():
        process_set_enabled(process=process, enabled=False)
        entity_update(entity=entity, data={"n": 2})

    assert Run.objects.filter(process=process).count() == 1
    assert not EntityEvent.objects.filter(dispatched_at__isnull=True).exists()



@pytest.fixture
def refusing_runs():
    """A database trigger that refuses to insert a run whose input has n = 13: the run's
    INSERT fails in the database itself, where the save's transaction must survive it.
    Yields a function that takes the trigger away."""
    table = connection.ops.quote_name(Run._meta.db_table)
    if connection.vendor == "postgresql":
        create = [
            "CREATE FUNCTION tests_refuse_run() RETURNS trigger AS $$ BEGIN "
            "IF NEW.input->>'n' = '13' THEN RAISE EXCEPTION 'refused'; END IF; "
            "RETURN NEW; END $$ LANGUAGE plpgsql",
            f"CREATE TRIGGER tests_refuse_run BEFORE INSERT ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION tests_refuse_run()"]
        drop = [f"DROP TRIGGER IF EXISTS tests_refuse_run ON {table}",
                "DROP FUNCTION IF EXISTS tests_refuse_run()"]
    else:
        create = [f"CREATE TRIGGER tests_refuse_run BEFORE INSERT ON {table} "
                  "WHEN json_extract(NEW.input, '$.n') = 13 "
                  "BEGIN SELECT RAISE(ABORT, 'refused'); END"]
        drop = ["DROP TRIGGER IF EXISTS tests_refuse_run"]

    def run(statements: list[str]) -> None:
        with connection.cursor() as cursor:
            for sql in statements:
                cursor.execute(sql)

    run(create)
    yield lambda: run(drop)
    run(drop)


def test_a_run_the_database_refuses_does_not_fail_the_save(queue, refusing_runs, caplog):
    """The run's INSERT fails inside the save's transaction: only its savepoint is rolled
    back, so the save and what the same transaction does after it commit; the event
    stays undispatched (the dispatch after the commit fails too, and logs), and the
    sweeper starts the run once the database takes it: nothing lost, nothing twice."""
    entity_type = make_entity_type()
    process = updated_process(entity_type)
    entity = entity_create(entity_type=entity_type, reference="R-1", data={"n": 0})
    other = entity_create(entity_type=entity_type, reference="R-2", data={"n": 0})
    queue.purge_queue()

    with transaction.atomic():
        entity_update(entity=entity, data={"n": 13})
        entity_update(entity=other, data={"n": 1})  # the transaction is still usable

    entity.refresh_from_db()
    other.refresh_from_db()
    assert (entity.data, other.data) == ({"n": 13}, {"n": 1})
    refused = EntityEvent.objects.get(entity=entity, type="entity.updated")
    assert refused.dispatched_at is None and not Run.objects.filter(event=refused).exists()
    assert "the sweeper will retry it" in caplog.text
    [started] = Run.objects.filter(entity=other, process=process)
    assert queue.queue_size() == 1  # the other save's run, rung once after the commit

    refusing_runs()  # the database takes the run now
    assert events_sweep(older_than_seconds=0) == 1
    [late] = Run.objects.filter(event=refused, process=process)
    assert late.input == {"n": 13} and late.pk != started.pk
    assert events_sweep(older_than_seconds=0) == 0
