"""Concurrency per key and per process (docs/user-guide/concurrency.md): a run over the
limit waits `pending` with its reason and starts, in order, when a slot frees; or the
new run is cancelled; or the oldest running one is. Runs here wait on a human step, so
they hold their slot until a test cancels them."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from automation.exceptions import DefinitionInvalidError
from automation.models import Run, StepRun
from automation.services.processes import process_save
from automation.services.runs import run_cancel, run_start
from automation.store import gates
from entities.services import entity_create

pytestmark = pytest.mark.django_db(transaction=True)

HOLD = [{"id": "hold", "type": "human", "config": {"approvers": ["ops@example.com"]}}]
ORDER = {"customer": {"name": "Ada"}, "total": 5}


def gated(slug: str, concurrency: dict, order_type=None):
    return process_save(slug=slug, name=slug, entity_type=order_type,
                        definition={"steps": HOLD, "triggers": [], "concurrency": concurrency})


def start(process, entity=None, **kwargs) -> Run:
    run, _ = run_start(process=process, trigger={"type": "manual"}, entity=entity, **kwargs)
    run.refresh_from_db()
    return run


def first_step(run: Run) -> StepRun:
    return StepRun.objects.get(run=run, step_id="hold")


def test_a_run_over_the_limit_waits_with_its_reason_and_starts_in_order(order_type):
    process = gated("queue", {"limit": 1}, order_type)
    order = entity_create(entity_type=order_type, reference="C-1", data=ORDER)
    other = entity_create(entity_type=order_type, reference="C-2", data=ORDER)
    first, second, third = (start(process, order) for _ in range(3))
    elsewhere = start(process, other)  # another key has its own slot

    assert first.status == "waiting" and first.pending_reason is None
    assert elsewhere.status == "waiting" and elsewhere.concurrency_key == str(other.pk)
    for queued in (second, third):
        assert queued.status == "pending" and queued.concurrency_key == str(order.pk)
        assert queued.pending_reason == (f"Waiting for a concurrency slot: limit 1 for key "
                                         f"'{order.pk}' reached.")
        assert first_step(queued).status == "waiting"  # no worker can claim it

    run_cancel(run=first)  # its slot goes to the oldest queued run, not the newest
    second.refresh_from_db(), third.refresh_from_db()
    assert second.status == "waiting" and second.pending_reason is None
    assert third.status == "pending" and third.pending_reason
    run_cancel(run=third)  # a queued run cancelled frees nothing and starts nothing
    assert Run.objects.get(pk=second.pk).status == "waiting"
    run_cancel(run=second)
    assert not Run.objects.filter(process=process, status="pending").exists()


def test_cancel_new_cancels_the_new_run_with_the_reason(order_type):
    process = gated("cancel-new", {"limit": 1, "onLimit": "cancel-new"}, order_type)
    order = entity_create(entity_type=order_type, reference="C-3", data=ORDER)
    first, second = start(process, order), start(process, order)
    assert first.status == "waiting"
    assert second.status == "cancelled" and second.finished_at is not None
    assert second.error == {"code": "concurrency_limit", "step": None, "message": (
        f"Cancelled: concurrency limit 1 for key '{order.pk}' reached (onLimit cancel-new).")}
    assert first_step(second).status == "cancelled"


def test_cancel_running_cancels_the_oldest_and_starts_the_new(order_type):
    process = gated("cancel-running", {"limit": 2, "onLimit": "cancel-running"}, order_type)
    order = entity_create(entity_type=order_type, reference="C-4", data=ORDER)
    runs = [start(process, order) for _ in range(3)]
    for run in runs:
        run.refresh_from_db()
    assert [r.status for r in runs] == ["cancelled", "waiting", "waiting"]
    assert runs[0].error["code"] == "concurrency_cancelled"
    assert first_step(runs[0]).status == "cancelled"


def test_process_limit_counts_every_key_and_a_key_expression_picks_the_key(order_type):
    process = gated("process-limit", {"key": "input.customer", "limit": 1, "processLimit": 2})
    a1 = start(process, input={"customer": "a"})
    a2 = start(process, input={"customer": "a"})  # its key is full
    b1 = start(process, input={"customer": "b"})
    c1 = start(process, input={"customer": "c"})  # the process is full
    assert (a1.status, a2.status, b1.status, c1.status) == ("waiting", "pending", "waiting",
                                                            "pending")
    assert c1.pending_reason == "Waiting for a concurrency slot: processLimit 2 reached."
    assert a2.concurrency_key == "a" and c1.concurrency_key == "c"
    run_cancel(run=b1)  # a2's key is still full: c1, queued later, takes the free slot
    assert Run.objects.get(pk=a2.pk).status == "pending"
    assert Run.objects.get(pk=c1.pk).status == "waiting"
    run_cancel(run=a1)
    assert Run.objects.get(pk=a2.pk).status == "waiting"


def test_a_run_that_completes_or_fails_frees_its_slot(make_process):
    process = process_save(slug="ends", name="ends", definition={
        "steps": [{"id": "a", "type": "function", "function": "noop"}], "triggers": [],
        "concurrency": {"limit": 1}})
    runs = [start(process) for _ in range(3)]  # synchronous: each completes before the next
    assert [Run.objects.get(pk=r.pk).status for r in runs] == ["completed"] * 3
    assert all(r.concurrency_key == "" for r in runs)


@pytest.mark.parametrize(("concurrency", "path", "message"), [
    ("one", "concurrency", "concurrency must be an object"),
    ({}, "concurrency", "Set limit (runs at once per key), processLimit"),
    ({"limit": 0}, "concurrency.limit", "limit must be a whole number from 1 to 10000."),
    ({"limit": True}, "concurrency.limit", "limit must be a whole number"),
    ({"processLimit": "2"}, "concurrency.processLimit", "processLimit must be a whole number"),
    ({"limit": 1, "onLimit": "drop"}, "concurrency.onLimit",
     "onLimit must be one of queue, cancel-new, cancel-running."),
    ({"limit": 1, "key": "entity.("}, "concurrency.key", ""),
    ({"limit": 1, "key": "result.x"}, "concurrency.key", "result"),
    ({"limit": 1, "max": 2}, "concurrency.max", "Unknown key 'max'"),
])
def test_bad_concurrency_is_refused_at_save_with_path_and_message(concurrency, path, message):
    with pytest.raises(DefinitionInvalidError) as err:
        gated("bad", concurrency)
    messages = err.value.fields[path]
    assert any(message in m for m in messages), messages


def test_the_reason_is_shown_on_the_api_and_the_run_page(order_type, admin_client):
    from django.urls import reverse

    process = gated("shown", {"limit": 1}, order_type)
    order = entity_create(entity_type=order_type, reference="C-5", data=ORDER)
    running, queued = start(process, order), start(process, order)
    api = admin_client.get(f"/api/executions/{queued.pk}").json()
    assert api["status"] == "pending" and api["pendingReason"] == queued.pending_reason
    assert api["concurrencyKey"] == str(order.pk)
    assert admin_client.get(f"/api/executions/{running.pk}").json()["pendingReason"] is None
    page = admin_client.get(reverse("admin:automation_run_change", args=[queued.pk]))
    assert ("Not started yet. Waiting for a concurrency slot: limit 1 for key"
            in page.content.decode())


def test_a_gated_end_with_nothing_queued_reads_its_gate_and_looks_no_further(order_type):
    """The gate's `queued` flag, read under its lock, says no start queued a run behind
    it: the end then neither scans the queued runs nor writes the gate (on SQLite one
    statement; PostgreSQL takes the gate's row lock first)."""
    process = gated("quiet", {"limit": 1}, order_type)
    order = entity_create(entity_type=order_type, reference="Q-1", data=ORDER)
    run = start(process, order)
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        gates.release(run)
    statements = [q["sql"] for q in queries.captured_queries
                  if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]
    expected = 2 if connection.features.has_select_for_update else 1
    assert len(statements) == expected, statements
    assert "automation_run" not in statements[-1]

    queued = start(process, order)  # behind the first: the gate says so, and it is admitted
    assert queued.pending_reason
    with transaction.atomic():
        Run.objects.filter(pk=run.pk).update(status="completed")
        gates.release(Run.objects.get(pk=run.pk))
    queued.refresh_from_db()
    assert queued.pending_reason is None and queued.status == "waiting"
