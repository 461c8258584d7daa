"""Joins, loop iterations and the run's own status, re-derived from the step-run rows
after every change (called with the run's row lock held)."""

from typing import Any

from django.db import DatabaseError, connections, router
from django.utils import timezone

from automation.definitions import Graph
from automation.models import ApprovalRequest, Run, StepRun
from automation.store import gates, hooks, waiting, waits
from automation.store.claims import Handover
from automation.store.doorbell import enqueue_step
from automation.store.graphs import is_plain, is_sequential
from automation.store.state import StepState
from automation.store.successors import finish_loop, iteration_scope, start_iteration
from entities.db.compiled import CompiledUpdate

ACTIVE = StepRun.ACTIVE


def branch_result(run: Run, scope: str) -> Any:
    """One ending branch: its output; several: an object keyed by their step ids."""
    ends = list(
        StepRun.objects.filter(run=run, scope=scope, state__terminal=True)
        .order_by("finished_at", "id").values_list("step_id", "output")
    )
    if len(ends) == 1:
        return ends[0][1]
    return {step_id: output for step_id, output in ends} if ends else None


def settle_run(run: Run, graph: Graph, *, created: list | None = None,
               ended: StepRun | None = None, handover: Handover | None = None) -> None:
    """Shortcuts that need no re-read: `created`, the step runs the step just recorded
    scheduled (in a run with no join and no loop they are active, so the run is running
    and nothing else can change); `ended`, a step that completed and ended its branch
    (in a sequential run the only branch: the run is complete with its output)."""
    if created and is_plain(run.version_id):
        if run.status != Run.Status.RUNNING:
            run.status = Run.Status.RUNNING
            run.save(update_fields=["status"])
        return
    if ended is not None and run.status != Run.Status.FAILED and is_sequential(run.version_id):
        finish_run(run, result=ended.output)
        return
    for _ in range(1000):
        active = list(StepRun.objects.filter(run=run, status__in=ACTIVE, parent__isnull=True)
                      .only("id", "step_id", "scope", "status", "step_type", "state",
                            "not_before"))
        if not (_release_joins(run, graph, active)
                or _advance_loops(run, graph, active, handover=handover)):
            break
    if run.status == Run.Status.FAILED:
        return
    if not active:
        finish_run(run)
    else:
        # waiting: every active step waits on a human or a timer (a retry not due yet)
        now = timezone.now()
        busy = any(a.status == StepRun.Status.RUNNING or (
            a.status == StepRun.Status.PENDING and not (a.not_before and a.not_before > now))
            for a in active)
        status = Run.Status.RUNNING if busy else Run.Status.WAITING
        if run.status != status:
            run.status = status
            run.save(update_fields=["status"])
            if status == Run.Status.WAITING:
                waiting.announce(run)  # nothing moves without people: a waiter answers 202


def _release_joins(run: Run, graph: Graph, active: list[StepRun]) -> bool:
    released = False
    for join in active:
        state = StepState.from_json(join.state)
        if join.status != StepRun.Status.WAITING or not state.join:
            continue
        blocked = any(other.pk != join.pk and other.scope == join.scope
                      and join.step_id in graph.reach[other.step_id] for other in active)
        if blocked:
            continue
        join.status = StepRun.Status.PENDING
        join.input = state.arrivals
        state.join = False
        join.state = state.to_json()
        join.save(update_fields=["status", "input", "state"])
        enqueue_step(join.pk, priority=join.priority)
        released = True
    return released


def _advance_loops(run: Run, graph: Graph, active: list[StepRun], *,
                   handover: Handover | None) -> bool:
    advanced = False
    for loop in active:
        if loop.step_id not in graph.loop_bodies or loop.status != StepRun.Status.WAITING:
            continue
        loop.refresh_from_db(fields=["state"])
        state = StepState.from_json(loop.state)
        current = state.current or 0
        scope = iteration_scope(loop, current)
        if any(a.scope == scope or a.scope.startswith(scope + "/") for a in active):
            continue
        state.results = [*(state.results or []), branch_result(run, scope)]
        loop.state = state.to_json()
        loop.save(update_fields=["state"])
        if current + 1 < len(state.items):
            start_iteration(run, graph, loop, current + 1, handover=handover)
        else:
            finish_loop(run, graph, loop, handover=handover)
        advanced = True
    return advanced


def finish_run(run: Run, *, result: Any = None) -> None:
    run.status = Run.Status.COMPLETED
    run.result = branch_result(run, "") if result is None else result
    run.finished_at = timezone.now()
    _save_fields(run, ("status", "result", "finished_at"))
    gates.release(run)  # its concurrency slot, to the next queued run, in this transaction
    hooks.run_ended(run)
    waiting.announce(run)


# A step's record and a run's end: the same UPDATEs every time, compiled once per shape
# (every way of recording uses these: store.recording, store.grouped, store.postgresql)
STEP_UPDATE, RUN_UPDATE = CompiledUpdate(StepRun), CompiledUpdate(Run)


def _save_fields(run: Run, names: tuple[str, ...]) -> None:
    """`run.save(update_fields=names)` with its UPDATE compiled once (entities.db.compiled)."""
    using = router.db_for_write(Run)
    sql, params = RUN_UPDATE.sql_params({"pk": run.pk}, {n: getattr(run, n) for n in names},
                                         using)
    with connections[using].cursor() as cursor:
        cursor.execute(sql, params)
        if not cursor.rowcount:
            raise DatabaseError("Save with update_fields did not affect any rows.")


def fail_run(run: Run, step_run: StepRun, error: dict) -> None:
    run.status = Run.Status.FAILED
    run.error = {"message": error.get("message", "Step failed."), "step": step_run.step_id,
                 "code": error.get("code", "step_failed")}
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "error", "finished_at"])
    stop_active_steps(run, reason="failure")
    gates.release(run)
    hooks.run_ended(run)
    waiting.announce(run)


def stop_active_steps(run: Run, *, reason: str) -> None:
    """Cancel what has not finished; remembered so a retry can bring it back."""
    for step_run in StepRun.objects.filter(run=run, status__in=ACTIVE):
        state = StepState.from_json(step_run.state)
        state.stopped_status, state.stopped_by = step_run.status, reason
        step_run.state = state.to_json()
        step_run.status = StepRun.Status.CANCELLED
        step_run.save(update_fields=["state", "status"])
    ApprovalRequest.objects.filter(run=run, status=ApprovalRequest.Status.PENDING).update(
        status=ApprovalRequest.Status.CANCELLED
    )
    waits.close_run_waits(run)
