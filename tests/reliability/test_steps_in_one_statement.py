"""PostgreSQL records most steps in one statement (automation.engine.one_statement). It
must leave exactly the history the general way leaves, and give way to it whenever the
run is no longer running, the claim was lost, or the run's end has a webhook to write."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from automation.engine.executor import claim_step, execute_step
from automation.engine.flow import complete_step
from automation.engine.outcome import Outcome
from automation.models import Run, StepRun, WebhookDelivery
from automation.services import webhooks
from automation.services.processes import process_save
from automation.services.runs import run_cancel, run_start
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


def started(queued, slug: str) -> tuple[Run, StepRun]:
    process = process_save(slug=slug, name=slug, definition={"steps": THREE})
    run, _ = run_start(process=process, trigger={"type": "manual"})
    return run, claim_step(StepRun.objects.get(run=run, step_id="a").pk, lease_seconds=60)


def test_a_step_finishing_after_its_run_was_cancelled_starts_nothing(queued):
    run, step = started(queued, "cancelled")
    run_cancel(run=run)
    complete_step(step, Outcome("completed", output={"late": True}), duration_ms=1)
    assert StepRun.objects.get(pk=step.pk).status == StepRun.Status.CANCELLED
    assert not StepRun.objects.filter(run=run, step_id="b").exists()
    assert Run.objects.get(pk=run.pk).status == Run.Status.CANCELLED


def test_a_worker_whose_claim_was_taken_over_records_nothing(queued):
    run, first = started(queued, "taken-over")
    lease_runs_out(first)
    second = claim_step(first.pk, lease_seconds=60)
    assert second is not None and second.reclaimed
    complete_step(first, Outcome("completed", output={"from": "first"}), duration_ms=1)
    row = StepRun.objects.get(pk=first.pk)
    assert row.status == StepRun.Status.RUNNING and row.claim == second.claim
    assert not StepRun.objects.filter(run=run, step_id="b").exists()
    complete_step(second, Outcome("completed", output={"from": "second"}), duration_ms=1)
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
    complete_step(step, Outcome("completed", output={"x": 1}), duration_ms=1)
    assert StepRun.objects.get(run=run, step_id="b").input == {"x": 1}
    assert synchronous_commit() == "on"


@pytest.mark.parametrize("relaxed", [True, False])
def test_runs_are_the_same_with_every_commit_flushed(settings, relaxed):
    settings.ENTITYFLOW_RELAXED_COMMITS = relaxed
    process = process_save(slug=f"flushed-{relaxed}", name="F", definition={"steps": THREE})
    (status, result, finished, steps), _ = run_through(process, settings, one_statement=True)
    assert (status, result, finished) == (Run.Status.COMPLETED, {"n": 1}, True)
    assert [s[1] for s in steps] == [StepRun.Status.COMPLETED] * 3
