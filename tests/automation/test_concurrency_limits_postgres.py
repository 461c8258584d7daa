"""A gated run's end on PostgreSQL (docs/user-guide/concurrency.md, docs/architecture.md):
with nothing queued behind its gate it is one statement, as an ungated run's end is;
with a run queued, even one queued by a start that committed while the end waited for
the gate, it takes the general way and starts the oldest queued run. Real concurrent
connections (threads, each with its own), no worker: steps are claimed and recorded
here, through the store, as a worker does."""

import threading
import time

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django_q.conf import Conf

from automation.definitions.steps import Outcome
from automation.models import ConcurrencyGate, Run, StepRun
from automation.services.processes import process_save
from automation.services.runs import run_cancel, run_start
from automation.store import Claim, get_store
from entities.services import entity_create

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql",
                       reason="the one-statement end is PostgreSQL's (store.postgresql)"),
]

ORDER = {"customer": {"name": "Ada"}, "total": 5}
NOOP = [{"id": "a", "type": "function", "function": "noop"}]


@pytest.fixture(autouse=True)
def queued(settings, monkeypatch):
    """Steps go to the broker and wait there: this test claims and records them."""
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    monkeypatch.setattr(Conf, "SYNC", False)


def process(slug: str, order_type, concurrency: dict | None):
    definition = {"steps": NOOP, "triggers": []}
    if concurrency is not None:
        definition["concurrency"] = concurrency
    return process_save(slug=slug, name=slug, entity_type=order_type, definition=definition)


def order(order_type, reference: str):
    return entity_create(entity_type=order_type, reference=reference, data=ORDER)


def start(process, entity=None, **kwargs) -> Run:
    run, _ = run_start(process=process, trigger={"type": "manual"}, entity=entity, **kwargs)
    return Run.objects.get(pk=run.pk)


def claimed(run: Run) -> Claim:
    claim = get_store().claim(StepRun.objects.get(run=run).pk, lease_seconds=60)
    assert claim is not None
    return claim


def end(claim: Claim) -> int:
    """Record the claimed (last) step: the run ends. Returns the statements it took, not
    counting a PREPARE: the one-statement record is prepared once per connection and
    statement shape (store.postgresql), not once per end."""
    with CaptureQueriesContext(connection) as statements:
        get_store().record(claim, Outcome("completed", output={"done": True}), duration_ms=1)
    return len([s for s in statements if not s["sql"].startswith("PREPARE ")])


def queued_behind(process) -> bool:
    return ConcurrencyGate.objects.filter(process=process, queued=True).exists()


def waiting_for_slot(run: Run) -> bool:
    run.refresh_from_db()
    return run.status == Run.Status.PENDING and run.pending_reason is not None


def test_a_gated_end_with_nothing_queued_costs_what_an_ungated_end_costs(order_type):
    free, gated = process("free", order_type, None), process("gated", order_type, {"limit": 1})
    ungated_cost = end(claimed(start(free, order(order_type, "F-1"))))
    run = start(gated, order(order_type, "G-1"))
    gated_cost = end(claimed(run))
    assert ungated_cost == gated_cost == 1
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED and run.result == {"done": True}


def test_with_a_run_queued_the_end_starts_it_and_the_next_end_is_one_statement_again(
        order_type):
    gated = process("queue", order_type, {"limit": 1})
    entity = order(order_type, "Q-1")
    first = start(gated, entity)
    second = start(gated, entity)
    assert waiting_for_slot(second) and queued_behind(gated)
    assert end(claimed(first)) > 1  # the general way: it starts the queued run
    assert not waiting_for_slot(second)
    assert StepRun.objects.get(run=second).status == StepRun.Status.PENDING
    assert not queued_behind(gated)  # nothing is left behind the gate
    assert end(claimed(second)) == 1
    assert Run.objects.get(pk=second.pk).status == Run.Status.COMPLETED


def test_a_cancelled_queued_run_costs_one_general_end_only(order_type):
    gated = process("cancelled", order_type, {"limit": 1})
    entity = order(order_type, "X-1")
    first, second = start(gated, entity), start(gated, entity)
    run_cancel(run=second)  # leaves the gate saying a run may be queued
    assert end(claimed(first)) > 1  # so this end looks, finds none, and says so
    assert not queued_behind(gated)
    assert end(claimed(start(gated, entity))) == 1


def test_under_a_process_limit_a_run_left_queued_keeps_the_next_end_looking(order_type):
    """b1's end starts nothing (a2's key is still held by a1) and must leave the mark, so
    a1's end, which frees a2's key, looks for a2 and starts it."""
    gated = process("process-limit", None, {"key": "input.customer", "limit": 1,
                                            "processLimit": 2})
    a1, a2, b1 = (start(gated, input={"customer": c}) for c in ("a", "a", "b"))
    assert waiting_for_slot(a2)
    assert end(claimed(b1)) > 1
    assert waiting_for_slot(a2) and queued_behind(gated)
    assert end(claimed(a1)) > 1
    assert not waiting_for_slot(a2) and not queued_behind(gated)
    assert end(claimed(a2)) == 1


def locks_awaited() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                       "AND datname = current_database()")
        return cursor.fetchone()[0]


class InThread(threading.Thread):
    """`work` on a connection of its own; its exception, if any, is raised by join."""

    def __init__(self, work):
        super().__init__(daemon=True)
        self.work, self.error, self.result = work, None, None

    def run(self) -> None:
        try:
            self.result = self.work()
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            self.error = exc
        finally:
            connections.close_all()

    def join(self, timeout: float = 30) -> None:
        super().join(timeout)
        assert not self.is_alive(), "the thread did not finish"
        if self.error is not None:
            raise self.error


@pytest.mark.parametrize(("concurrency", "same_key"), [
    ({"limit": 1}, True),
    ({"processLimit": 1}, False),  # the process's gate: a run of another key waits on it
])
def test_an_end_waiting_for_a_start_that_queues_runs_starts_them_oldest_first(
        order_type, concurrency, same_key):
    """The start locks the gate, sees the run holding the slot and queues two runs; the
    run's end, in another connection, locks the run and waits for the gate; the start
    commits. The end must see the queued runs (a NOT EXISTS in its statement's snapshot
    would not) and start the oldest; the other stays queued until that one ends."""
    gated = process("race", order_type, concurrency)
    holder = start(gated, order(order_type, "R-1"))
    claim = claimed(holder)
    entity = Run.objects.get(pk=holder.pk).entity if same_key else order(order_type, "R-2")
    queued_in_start, commit = threading.Event(), threading.Event()

    def start_two_and_wait():
        with transaction.atomic():
            runs = [start(gated, entity), start(gated, entity)]
            queued_in_start.set()
            assert commit.wait(30)
        return runs

    starter = InThread(start_two_and_wait)
    starter.start()
    assert queued_in_start.wait(30)
    ender = InThread(lambda: end(claim))
    ender.start()
    deadline = time.monotonic() + 30
    while locks_awaited() < 1:  # the end holds the run's lock and waits for the gate's
        assert time.monotonic() < deadline, "the end never waited for the gate"
        assert ender.is_alive(), "the end did not wait for the start"
        time.sleep(0.02)
    commit.set()
    starter.join()
    ender.join()
    older, newer = starter.result
    assert ender.result > 1  # it saw the queued runs: the general way
    assert Run.objects.get(pk=holder.pk).status == Run.Status.COMPLETED
    assert not waiting_for_slot(older), "the oldest queued run did not start"
    assert StepRun.objects.get(run=older).status == StepRun.Status.PENDING
    assert waiting_for_slot(newer)
    assert end(claimed(older)) > 1  # the newer one is still queued behind the gate
    assert not waiting_for_slot(newer)
    assert end(claimed(newer)) == 1
    assert not Run.objects.filter(process=gated, status=Run.Status.PENDING).exists()
