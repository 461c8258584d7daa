"""Concurrency per key and per process, enforced where runs are written
(docs/user-guide/concurrency.md).

A gated start and a gated run's end first update the gate rows of the run's key (and of
its process when the process has a `processLimit`): on PostgreSQL that is the row lock,
on SQLite the one writer's lock. Under it they count the runs that hold a slot (pending
without a reason, running, waiting) and decide: start, queue (status `pending` with a
`pending_reason` and its first step `waiting`, so no worker can claim it), cancel the new
run, or cancel the oldest running ones. A run's end frees its slot and starts the
oldest queued runs in the same transaction, so a worker that dies can leave nothing
queued for ever: either the end committed with the next run's start, or neither did.
Gates are always taken in the same order (the process's first, then keys), so two
transactions never wait for each other in a circle.

The first gate a start takes (the process's under a `processLimit`, else the key's)
also says whether a run may be queued behind it (`ConcurrencyGate.queued`): set under
its lock by every start that queues, cleared under it by a run's end that leaves nothing
queued. A run's end that reads it false while holding that lock has no queued run to
start, so on PostgreSQL it ends in one statement like an ungated run
(store.postgresql, docs/operating.md).
"""

from django.db import connections, router
from django.db.models import QuerySet
from django.utils import timezone

from automation.definitions.flow import Concurrency
from automation.models import ConcurrencyGate, Run, StepRun
from automation.store.doorbell import enqueue_step
from automation.store.graphs import concurrency_for, graph_for
from automation.store.policy import step_timeout_seconds

HOLDS_SLOT = (Run.Status.PENDING, Run.Status.RUNNING, Run.Status.WAITING)
PROCESS_GATE = ""  # a key's gate is "k:<key>", so no key can take the process's name
ADMIT_SCAN = 200  # queued runs looked at per run end under a processLimit


def lock(process_id: int, key: str, rule: Concurrency, *, writing: bool = False) -> None:
    """Take the gates of `key` (and of the process) for the rest of the transaction.
    `writing`: the transaction has written already (a run's end); a database without row
    locks (SQLite) then holds its one writer's lock, and the gate row adds nothing."""
    if writing and not connections[router.db_for_write(Run)].features.has_select_for_update:
        return
    names = ([PROCESS_GATE] if rule.process_limit else []) + ([f"k:{key}"] if rule.limit else [])
    for name in names:
        ConcurrencyGate.objects.bulk_create(
            [ConcurrencyGate(process_id=process_id, key=name, touched=1)],
            update_conflicts=True, unique_fields=["process", "key"], update_fields=["touched"])


def first_gate(key: str, rule: Concurrency) -> str:
    """The name of the gate every start of `key` takes first: the one whose `queued`
    says whether a run of `key` ending may have a queued run to start."""
    return PROCESS_GATE if rule.process_limit else f"k:{key}"


def mark_queued(process_id: int, key: str, rule: Concurrency) -> None:
    """A run of `key` is being queued (its start holds the gates)."""
    ConcurrencyGate.objects.filter(process_id=process_id, key=first_gate(key, rule),
                                   queued=False).update(queued=True)


def holding(process_id: int, key: str | None = None) -> QuerySet:
    """The runs that hold a slot of the process (of one key when `key` is given)."""
    runs = Run.objects.filter(process_id=process_id, concurrency_key__isnull=False,
                              status__in=HOLDS_SLOT, pending_reason__isnull=True)
    return runs if key is None else runs.filter(concurrency_key=key)


def full(process_id: int, key: str, rule: Concurrency) -> tuple[str, QuerySet, int] | None:
    """(what is reached, the runs holding the slots, their limit) when a new run of
    `key` may not start now; None when it may."""
    if rule.limit:
        runs = holding(process_id, key)
        if runs.count() >= rule.limit:
            return f"limit {rule.limit} for key '{key[:120]}' reached", runs, rule.limit
    if rule.process_limit:
        runs = holding(process_id)
        if runs.count() >= rule.process_limit:
            return f"processLimit {rule.process_limit} reached", runs, rule.process_limit
    return None


def victims(runs: QuerySet, limit: int) -> list[Run]:
    """onLimit cancel-running: the oldest of `runs` to cancel so that one slot is free.
    A run whose row is locked (its step being recorded this instant) is skipped rather
    than waited for; it keeps its slot."""
    over = runs.count() - limit + 1
    if over <= 0:
        return []
    oldest = runs.order_by("created_at", "id")
    if connections[router.db_for_write(Run)].features.has_select_for_update_skip_locked:
        oldest = oldest.select_for_update(skip_locked=True, of=("self",))
    return list(oldest[:over])


def release(run: Run) -> None:
    """A gated run ended (with its row lock held): start the oldest queued runs its slot
    (and any other free one) lets start, in this transaction."""
    if run.concurrency_key is None or run.pending_reason is not None:
        return  # not gated, or it never held a slot (a queued run cancelled)
    rule = concurrency_for(run.version_id)
    if rule is None:
        return
    lock(run.process_id, run.concurrency_key, rule, writing=True)
    if not ConcurrencyGate.objects.filter(process_id=run.process_id, queued=True,
                                          key=first_gate(run.concurrency_key, rule)).exists():
        return  # read under the gate's lock: no start has queued a run behind it
    queued = Run.objects.filter(process_id=run.process_id, status=Run.Status.PENDING,
                                pending_reason__isnull=False).order_by("created_at", "id")
    if not rule.process_limit:
        queued = queued.filter(concurrency_key=run.concurrency_key)
    candidates = list(queued.only("id", "version_id", "concurrency_key")[:ADMIT_SCAN])
    left = len(candidates) == ADMIT_SCAN  # more may be queued than were looked at
    for candidate in candidates:
        key = candidate.concurrency_key
        if key != run.concurrency_key:
            lock(run.process_id, key, rule, writing=True)  # after the process's gate
        if full(run.process_id, key, rule) is None:
            admit(candidate)
        elif rule.process_limit and holding(run.process_id).count() >= rule.process_limit:
            return  # the process is full: nothing further back may start either
        elif not rule.process_limit:
            return
        else:
            left = True  # its key is full, a run of another key may still start
    if not left:  # every queued run started: none is left behind the gate
        ConcurrencyGate.objects.filter(
            process_id=run.process_id, key=first_gate(run.concurrency_key, rule),
            queued=True).update(queued=False)


def admit(run: Run) -> None:
    """A queued run may start: its first step becomes claimable and is rung for."""
    if not Run.objects.filter(pk=run.pk, status=Run.Status.PENDING,
                              pending_reason__isnull=False).update(pending_reason=None):
        return
    graph = graph_for(run.version_id)
    steps = list(StepRun.objects.filter(run_id=run.pk, status=StepRun.Status.WAITING,
                                        parent__isnull=True).values_list("pk", "step_id"))
    # not_before: a queued step is old, but its doorbell is new; the sweeper waits its
    # grace period from now before it rings again
    StepRun.objects.filter(pk__in=[pk for pk, _ in steps]).update(
        status=StepRun.Status.PENDING, not_before=timezone.now())
    for pk, step_id in steps:
        enqueue_step(pk, timeout=step_timeout_seconds(graph.steps[step_id]),
                     priority=run.priority)
