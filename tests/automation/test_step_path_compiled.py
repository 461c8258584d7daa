"""A worker's step path sends statements compiled once (entities.db.compiled): after the
first run, claiming a step, making its run `running`, reading the run's status under
lock, writing its successor, ending the run and reading the subscriptions its end
notifies compile nothing, on every database; and what they write is what the first,
Django-compiled, run wrote (docs/performance.md)."""

from datetime import timedelta

import pytest
from django.db.models.sql import compiler
from django.utils import timezone

from automation.engine.executor import execute_step
from automation.functions import function
from automation.models import Run, StepRun, WebhookDelivery, WebhookSubscription
from automation.services import webhooks
from automation.services.processes import process_save
from automation.services.runs import run_start
from automation.store import get_store

pytestmark = pytest.mark.django_db(transaction=True)

THREE = [{"id": "a", "type": "function", "function": "test.compiled-step", "next": "b"},
         {"id": "b", "type": "function", "function": "test.compiled-step", "next": "c"},
         {"id": "c", "type": "function", "function": "test.compiled-step"}]
FIELDS = ("step_id", "status", "attempt", "input", "output", "error", "state", "logs")


@function("test.compiled-step")
def compiled_step(ctx):
    """A plain Python function step, not marked cheap."""
    return {"step": ctx.step_id, "n": (ctx.input or {}).get("n")}


def compiled_during(monkeypatch, call) -> list[str]:
    """The SQL Django compiled while `call` ran (every compiler's as_sql)."""
    seen: list[str] = []
    for cls in (compiler.SQLCompiler, compiler.SQLUpdateCompiler, compiler.SQLInsertCompiler):
        original = cls.__dict__["as_sql"]

        def as_sql(self, *args, _original=original, **kwargs):
            result = _original(self, *args, **kwargs)
            for sql, _ in (result if isinstance(result, list) else [result]):
                seen.append(sql)
            return result

        monkeypatch.setattr(cls, "as_sql", as_sql)
    call()
    monkeypatch.undo()
    return seen


def history(run: Run) -> tuple:
    run.refresh_from_db()
    steps = [tuple(getattr(s, f) for f in FIELDS) + (s.claim is not None, s.started_at is not None)
             for s in StepRun.objects.filter(run=run).order_by("id")]
    return run.status, run.result, run.started_at is not None, steps


def test_the_step_path_compiles_its_statements_once(queued_mode, monkeypatch):
    process = process_save(slug="compiled-path", name="C", definition={"steps": THREE})
    histories, compiled = [], []
    for _ in range(3):
        run, _ = run_start(process=process, trigger={"type": "manual"}, input={"n": 1})
        first = StepRun.objects.get(run=run).pk
        compiled.append(compiled_during(monkeypatch, lambda first=first: execute_step(first)))
        histories.append(history(run))
    # the same history, whether Django compiled the statements or they were reused
    assert histories[0] == histories[1] == histories[2]
    assert histories[0][0] == Run.Status.COMPLETED and histories[0][2]
    assert [s[1] for s in histories[0][3]] == [StepRun.Status.COMPLETED] * 3
    step_table, run_table = f'"{StepRun._meta.db_table}"', f'"{Run._meta.db_table}"'
    step_path = (f"UPDATE {step_table}", f"INSERT INTO {step_table}",  # claim, record, next
                 f'UPDATE {run_table} SET "status" = %s, "started_at"',  # the run starts
                 f'SELECT {run_table}."status" FROM',  # the run's status under lock
                 f'UPDATE {run_table} SET "status" = %s, "result"',  # the run's end
                 f'SELECT "{WebhookSubscription._meta.db_table}"')  # its end's subscriptions
    assert [sql for sql in compiled[2] if sql.startswith(step_path)] == []


def test_a_reclaimed_step_remembers_the_attempt_it_lost(queued_mode):
    """The compiled claim of an expired lease keeps the lost attempt's key (key_attempt)
    and counts a new attempt, as the Django-compiled UPDATE did."""
    process = process_save(slug="compiled-reclaim", name="R", definition={"steps": THREE})
    run, _ = run_start(process=process, trigger={"type": "manual"}, input={"n": 2})
    step = StepRun.objects.get(run=run)
    store = get_store()
    first = store.claim(step.pk, lease_seconds=60)
    assert first is not None and not first.reclaimed and first.step_run.attempt == 1
    assert store.claim(step.pk, lease_seconds=60) is None  # held: nobody else takes it
    StepRun.objects.filter(pk=step.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1))
    second = store.claim(step.pk, lease_seconds=60)
    assert second is not None and second.reclaimed
    row = StepRun.objects.get(pk=step.pk)
    assert (row.attempt, row.key_attempt, row.status) == (2, 1, StepRun.Status.RUNNING)
    assert row.claim == second.step_run.claim != first.step_run.claim
    assert Run.objects.get(pk=run.pk).status == Run.Status.RUNNING


def test_a_subscription_saved_after_a_run_ended_counts_for_the_next_runs_end(queued_mode):
    """The run's end reads the active subscriptions with SQL compiled once, but reads them
    every time: one saved (or switched off) between two runs counts for the second."""
    process = process_save(slug="compiled-hooks", name="H", definition={"steps": THREE})

    def run_once(n: int) -> Run:
        run, _ = run_start(process=process, trigger={"type": "manual"}, input={"n": n})
        execute_step(StepRun.objects.get(run=run).pk)
        run.refresh_from_db()
        assert run.status == Run.Status.COMPLETED
        return run

    run_once(1)
    assert not WebhookDelivery.objects.exists()
    on = webhooks.webhook_subscription_create(url="http://127.0.0.1:9/on", events=["*"],
                                              secret="whsec_0123456789abcdef0123", owner="t")
    webhooks.webhook_subscription_create(url="http://127.0.0.1:9/off", events=["*"],
                                         secret="whsec_0123456789abcdef0123", owner="t")
    WebhookSubscription.objects.exclude(pk=on.pk).update(active=False)
    second = run_once(2)
    [delivery] = WebhookDelivery.objects.all()
    assert (delivery.subscription_id, delivery.event, delivery.payload["id"]) == (
        on.pk, "workflow.completed", str(second.pk))
    WebhookSubscription.objects.filter(pk=on.pk).update(active=False)
    run_once(3)
    assert WebhookDelivery.objects.count() == 1
