"""Durable waits (docs/user-guide/waits.md): the `wait` and `waitForEvent` steps, their
validation, the rows they wait in, their wake-ups and the events that end them. The
worker side (restarts, no worker held) is tests/automation/test_waits_worker.py."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from automation.definitions import validate_definition
from automation.definitions.durations import parse_duration_ms
from automation.definitions.steps import step_type
from automation.exceptions import DefinitionInvalidError
from automation.models import Run, StepRun, StepWait
from automation.services import waits
from automation.services.dry_run import dry_run
from automation.services.processes import process_save
from automation.services.runs import run_cancel, run_start
from entities.outbox import event_publish
from entities.services import entity_update
from tests.factories import make_order

pytestmark = pytest.mark.django_db(transaction=True)


def wait_steps(**config) -> list:
    return [{"id": "pause", "type": "wait", "config": config, "next": "after"},
            {"id": "after", "type": "function", "function": "test.record"}]


def event_steps(**config) -> list:
    return [{"id": "hear", "type": "waitForEvent", "next": "after",
             "config": {"event": "payment.received", "timeout": "1h", "onTimeout": "late",
                        **config}},
            {"id": "after", "type": "function", "function": "test.record"},
            {"id": "late", "type": "function", "function": "test.record"}]


def start(process, **kwargs) -> Run:
    run, _ = run_start(process=process, trigger={"type": "manual"}, **kwargs)
    run.refresh_from_db()
    return run


@pytest.fixture(autouse=True)
def _fresh_types():
    waits.forget_event_types()
    yield
    waits.forget_event_types()


# -- durations and validation --------------------------------------------------------------

@pytest.mark.parametrize(("text", "ms"), [("2s", 2000), ("250ms", 250), ("5m", 300_000),
                                          ("1.5h", 5_400_000), ("1d", 86_400_000),
                                          ("PT2S", 2000), ("P1DT2H", 93_600_000),
                                          ("PT0.5S", 500), (1500, 1500)])
def test_durations_in_the_forms_a_definition_writes(text, ms):
    assert parse_duration_ms(text) == ms


def errors_of(steps, **definition) -> dict:
    return validate_definition({"steps": steps, **definition}, function_exists=lambda n: True)


@pytest.mark.parametrize("bad", ["2 weeks", "P", "PT", "-2s", "", "soon", True])
def test_a_bad_duration_is_refused_with_the_forms_that_work(bad):
    errors = errors_of(wait_steps(**{"for": bad}))
    assert "steps[0].config.for" in errors, errors
    assert "30s" in errors["steps[0].config.for"][0] or "from" in errors["steps[0].config.for"][0]


def test_a_wait_needs_exactly_one_of_for_and_until():
    assert "either config.for" in errors_of(wait_steps())["steps[0].config"][0]
    both = errors_of(wait_steps(**{"for": "2s", "until": "input.at"}))
    assert "steps[0].config" in both


def test_a_wait_longer_than_a_year_is_refused():
    errors = errors_of(wait_steps(**{"for": "400d"}))
    assert "from 1 ms to 366 d" in errors["steps[0].config.for"][0]


def test_bad_cel_in_until_and_in_the_condition_is_refused_at_save():
    assert "steps[0].config.until" in errors_of(wait_steps(until="input.at +"))
    errors = errors_of(event_steps(condition="event.data.order == "))
    assert "steps[0].config.condition" in errors
    unknown = errors_of(event_steps(condition="nobody.knows == 1"))
    assert "nobody" in unknown["steps[0].config.condition"][0]


def test_wait_for_event_needs_an_event_a_timeout_and_where_the_timeout_goes():
    steps = event_steps()
    del steps[0]["config"]["onTimeout"], steps[0]["config"]["timeout"], steps[0]["config"]["event"]
    steps.pop()  # `late` would be unreachable
    errors = errors_of(steps)
    assert "Name the event type" in errors["steps[0].config.event"][0]
    assert "A duration is required" in errors["steps[0].config.timeout"][0]
    assert "when no event comes" in errors["steps[0].config.onTimeout"][0]


def test_a_timeout_edge_to_a_missing_step_is_refused():
    errors = errors_of(event_steps(onTimeout="nowhere"))
    assert errors["steps[0].config.onTimeout"] == ["unknown step 'nowhere'"]


def test_a_process_time_zone_must_be_an_iana_name():
    assert "Unknown time zone" in errors_of(wait_steps(**{"for": "2s"}),
                                            timezone="Mars/Olympus")["timezone"][0]
    assert errors_of(wait_steps(**{"for": "2s"}), timezone="Europe/Berlin") == {}


def test_saving_a_bad_wait_is_an_error_with_its_path():
    with pytest.raises(DefinitionInvalidError) as caught:
        process_save(slug="bad", name="Bad", definition={"steps": wait_steps(**{"for": "2x"})})
    assert "steps[0].config.for" in caught.value.fields


def test_the_timeout_edge_is_an_edge_of_the_graph_and_a_maybe_in_the_dry_run(make_process,
                                                                             order_type):
    result = dry_run(process=make_process(event_steps()), entity=make_order())
    by_id = {s["id"]: s for s in result["steps"]}
    assert by_id["hear"]["waitsFor"] == "event payment.received · timeout 1 h 0 min"
    assert by_id["after"]["wouldRun"] == "maybe" and by_id["late"]["wouldRun"] == "maybe"
    waited = dry_run(process=make_process(wait_steps(**{"for": "2s"})), entity=make_order())
    assert [s.get("waitsFor") for s in waited["steps"]] == ["wait 2.0 s", None]
    assert waited["steps"][1]["wouldRun"] == "yes"


def test_summaries_say_what_the_steps_wait_for():
    assert step_type("wait").summary({"config": {"for": "PT90S"}}) == "wait 1 min 30 s"
    assert step_type("wait").summary({"config": {"until": "input.at"}}) == "wait until input.at"
    assert step_type("waitForEvent").summary({"config": {
        "event": "x", "condition": "event.data.a == 1", "timeout": "2s"}}) == (
        "event x where event.data.a == 1 · timeout 2.0 s")


# -- wait ----------------------------------------------------------------------------------

def test_a_wait_leaves_its_run_waiting_in_rows_and_goes_on_when_due(make_process, calls):
    run = start(make_process(wait_steps(**{"for": "2s"})), input={"n": 1})
    assert run.status == Run.Status.WAITING
    step = StepRun.objects.get(run=run, step_id="pause")
    assert step.status == StepRun.Status.WAITING
    assert step.state["waitingFor"]["kind"] == "time" and step.state["waitingFor"]["for"] == "2s"
    wait = StepWait.objects.get(step_run=step)
    assert timedelta(seconds=1) < wait.due_at - step.started_at <= timedelta(seconds=3)
    assert waits.waits_due_sweep() == 0 and calls == []  # not due yet
    with time_machine.travel(wait.due_at + timedelta(seconds=1)):
        assert waits.waits_due_sweep() == 1
        assert waits.wait_wake(step.pk) is False  # a second wake finds nothing to do
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED
    assert calls == [("after", {"n": 1})] or calls[0][0] == "after"
    assert not StepWait.objects.exists()


def test_until_is_read_in_the_process_time_zone(calls):
    process = process_save(slug="tz", name="TZ", definition={
        "steps": wait_steps(until="input.at"), "timezone": "America/New_York"})
    run = start(process, input={"at": "2031-01-02T09:00:00"})
    step = StepRun.objects.get(run=run, step_id="pause")
    assert step.state["waitingFor"]["dueAt"] == "2031-01-02T09:00:00-05:00"
    utc = start(process, input={"at": "2031-01-02T09:00:00Z"})
    assert StepWait.objects.get(step_run__run=utc).due_at.isoformat() == "2031-01-02T09:00:00+00:00"


def test_until_that_is_not_a_time_fails_the_step_saying_so(make_process):
    run = start(make_process(wait_steps(until="input.at")), input={"at": 42})
    assert run.status == Run.Status.FAILED
    assert "must give a timestamp" in run.error["message"]


def test_cancelling_a_waiting_run_ends_the_wait(make_process, calls):
    run = start(make_process(wait_steps(**{"for": "1s"})))
    run_cancel(run=run)
    assert not StepWait.objects.exists()
    with time_machine.travel(timezone.now() + timedelta(seconds=5)):
        assert waits.waits_due_sweep() == 0
    run.refresh_from_db()
    assert run.status == Run.Status.CANCELLED and calls == []
    assert StepRun.objects.get(run=run, step_id="pause").status == StepRun.Status.CANCELLED


# -- waitForEvent ------------------------------------------------------------------------------

def test_a_published_event_that_matches_ends_the_wait_with_the_event(make_process, calls):
    process = make_process(event_steps(condition="event.data.order == input.order"))
    run = start(process, input={"order": "A-1"})
    other = start(process, input={"order": "B-2"})
    assert run.status == Run.Status.WAITING
    event_publish(type="payment.received", data={"order": "A-1", "amount": 5}, source="bank")
    run.refresh_from_db()
    other.refresh_from_db()
    assert run.status == Run.Status.COMPLETED
    assert other.status == Run.Status.WAITING  # its condition does not hold
    hear = StepRun.objects.get(run=run, step_id="hear")
    assert hear.output["type"] == "payment.received"
    assert hear.output["data"] == {"order": "A-1", "amount": 5}
    assert hear.output["entity"] is None and hear.output["occurredAt"]
    assert calls == [("after", hear.output)]


def test_an_entity_event_ends_a_wait_on_that_entity(make_process, calls, order_type):
    order = make_order()
    process = make_process(event_steps(event="entity.updated",
                                       condition="event.entity.id == entity.id"))
    run = start(process, entity=order)
    event_publish(type="unrelated", data={})
    entity_update(entity=order, data={**order.data, "note": "paid"})
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED
    hear = StepRun.objects.get(run=run, step_id="hear")
    assert hear.output["entity"] == {"id": str(order.pk), "type": "order",
                                     "reference": order.reference}


def test_no_event_in_time_goes_the_timeout_edge(make_process, calls):
    run = start(make_process(event_steps(timeout="PT2S")))
    wait = StepWait.objects.get(step_run__run=run)
    with time_machine.travel(wait.due_at + timedelta(seconds=1)):
        assert waits.waits_due_sweep() == 1
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED
    assert calls == [("late", {"timedOut": True})]
    assert StepRun.objects.get(run=run, step_id="hear").output == {"timedOut": True}
    event_publish(type="payment.received", data={})  # too late: nothing waits any more
    assert Run.objects.get(pk=run.pk).status == Run.Status.COMPLETED and len(calls) == 1


def test_a_wake_finds_an_event_the_dispatch_missed(make_process, calls, monkeypatch):
    """An event saved while this process did not yet know of the wait (its list of
    waited-for types is read once a second) is found by the wake after the start."""
    run = start(make_process(event_steps()))
    monkeypatch.setattr(waits, "waited_event_types", lambda: frozenset())
    event_publish(type="payment.received", data={"late": False})
    assert Run.objects.get(pk=run.pk).status == Run.Status.WAITING
    assert waits.wait_wake(StepRun.objects.get(run=run, step_id="hear").pk) is True
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED and calls[0][0] == "after"


def test_a_condition_that_fails_to_evaluate_keeps_waiting_and_says_why(make_process):
    run = start(make_process(event_steps(condition="event.data.amount > 10")))
    event_publish(type="payment.received", data={"amount": "lots"})
    step = StepRun.objects.get(run=run, step_id="hear")
    assert step.status == StepRun.Status.WAITING
    assert any("event #" in line.get("message", "") for line in step.logs)


def test_the_run_api_shows_what_a_step_waits_for(make_process, client, admin_user):
    run = start(make_process(event_steps(condition="event.data.a == 1")))
    client.force_login(admin_user)
    body = client.get(f"/api/executions/{run.pk}?expand=steps").json()
    assert body["status"] == "waiting"
    hear = next(s for s in body["steps"] if s["id"] == "hear")
    assert hear["status"] == "waiting"
    assert hear["waitingFor"]["event"] == "payment.received"
    assert hear["waitingFor"]["condition"] == "event.data.a == 1"
    page = client.get(f"/admin/automation/run/{run.pk}/change/")
    assert b"is waiting for event payment.received where event.data.a == 1" in page.content



def test_the_entity_timeline_says_what_a_waiting_run_waits_for(make_process, calls):
    """A time, an event (until its timeout) and a sub-process's child run."""
    from entities.timeline import timeline

    order = make_order()
    pause = start(make_process(wait_steps(**{"for": "1h"})), entity=order)
    hear = start(make_process(event_steps()), entity=order)
    child = make_process(wait_steps(**{"for": "1h"}), slug="child")
    parent = start(make_process([{"id": "call", "type": "process",
                                  "config": {"process": "child"}}]), entity=order)
    entries, _ = timeline(order, kinds={"run"}, limit=50)
    summaries = {entry.details["runId"]: (entry.summary, entry.details.get("waitingFor"))
                 for entry in entries}
    due = StepWait.objects.get(step_run__run=pause).due_at.isoformat()
    summary, [what] = summaries[str(pause.pk)]
    assert summary.endswith(f"now waiting for until {due} (step pause)")
    assert what["waitingFor"]["kind"] == "time"
    summary, [what] = summaries[str(hear.pk)]
    assert "now waiting for event payment.received, until " in summary
    assert summary.endswith("(then timeout) (step hear)")
    child_run = Run.objects.get(process=child)
    summary, [what] = summaries[str(parent.pk)]
    assert summary.endswith(f"now waiting for the sub-process run {child_run.pk} (step call)")
    assert what["childRunId"] == str(child_run.pk)
