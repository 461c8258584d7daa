"""Joins, loop iterations and the run's own status, re-derived from the step-run rows
after every change (called with the run's row lock held)."""

from typing import Any

from django.utils import timezone

from automation.definitions import Graph, Step
from automation.engine.graphs import is_plain, is_sequential
from automation.engine.queue import enqueue_step
from automation.models import ApprovalRequest, Run, StepRun

ACTIVE = StepRun.ACTIVE


def iteration_scope(loop_run: StepRun, index: int) -> str:
    name = f"{loop_run.step_id}[{index}]"
    return f"{loop_run.scope}/{name}" if loop_run.scope else name


def arrive_at_join(run: Run, step: Step, scope: str, from_step: str, result: Any) -> None:
    join, _ = StepRun.objects.get_or_create(
        run=run, step_id=step.id, scope=scope,
        defaults={"step_type": step.type, "status": StepRun.Status.WAITING,
                  "state": {"join": True, "arrivals": {}}},
    )
    if join.status != StepRun.Status.WAITING or not join.state.get("join"):
        return  # already released: a late branch cannot fire the join twice
    join.state = {**join.state, "arrivals": {**join.state["arrivals"], from_step: result}}
    join.save(update_fields=["state"])


def start_iteration(run: Run, graph: Graph, loop_run: StepRun, index: int) -> None:
    from automation.engine.flow import follow

    loop_run.state = {**loop_run.state, "current": index}
    loop_run.save(update_fields=["state"])
    follow(run, graph, loop_run, graph.steps[loop_run.step_id].next,
           result=loop_run.state["items"][index], scope=iteration_scope(loop_run, index))
    StepRun.objects.filter(run=run, scope=iteration_scope(loop_run, index)).update(index=index)


def finish_loop(run: Run, graph: Graph, loop_run: StepRun) -> None:
    from automation.engine.flow import follow

    loop_run.status = StepRun.Status.COMPLETED
    loop_run.output = loop_run.state.get("results", [])
    loop_run.finished_at = timezone.now()
    loop_run.save()
    then = graph.steps[loop_run.step_id].config.get("then")
    follow(run, graph, loop_run, [then] if then else [], result=loop_run.output)


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
               ended: StepRun | None = None) -> None:
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
        _finish_run(run, result=ended.output)
        return
    for _ in range(1000):
        active = list(StepRun.objects.filter(run=run, status__in=ACTIVE)
                      .only("id", "step_id", "scope", "status", "step_type", "state"))
        if not (_release_joins(run, graph, active) or _advance_loops(run, graph, active)):
            break
    if run.status == Run.Status.FAILED:
        return
    if not active:
        _finish_run(run)
    else:
        busy = any(a.status != StepRun.Status.WAITING for a in active)
        status = Run.Status.RUNNING if busy else Run.Status.WAITING
        if run.status != status:
            run.status = status
            run.save(update_fields=["status"])


def _release_joins(run: Run, graph: Graph, active: list[StepRun]) -> bool:
    released = False
    for join in active:
        if join.status != StepRun.Status.WAITING or not join.state.get("join"):
            continue
        blocked = any(other.pk != join.pk and other.scope == join.scope
                      and join.step_id in graph.reach[other.step_id] for other in active)
        if blocked:
            continue
        join.status = StepRun.Status.PENDING
        join.input = join.state["arrivals"]
        join.state = {**join.state, "join": False}
        join.save(update_fields=["status", "input", "state"])
        enqueue_step(join.pk)
        released = True
    return released


def _advance_loops(run: Run, graph: Graph, active: list[StepRun]) -> bool:
    advanced = False
    for loop in active:
        if loop.step_type != "loop" or loop.status != StepRun.Status.WAITING:
            continue
        loop.refresh_from_db(fields=["state"])
        current = loop.state.get("current", 0)
        scope = iteration_scope(loop, current)
        if any(a.scope == scope or a.scope.startswith(scope + "/") for a in active):
            continue
        loop.state["results"] = [*loop.state.get("results", []), branch_result(run, scope)]
        loop.save(update_fields=["state"])
        if current + 1 < len(loop.state["items"]):
            start_iteration(run, graph, loop, current + 1)
        else:
            finish_loop(run, graph, loop)
        advanced = True
    return advanced


def _finish_run(run: Run, *, result: Any = None) -> None:
    run.status = Run.Status.COMPLETED
    run.result = branch_result(run, "") if result is None else result
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "result", "finished_at"])
    from automation.services import notifications

    notifications.run_finished(run)


def fail_run(run: Run, step_run: StepRun, error: dict) -> None:
    run.status = Run.Status.FAILED
    run.error = {"message": error.get("message", "Step failed."), "step": step_run.step_id,
                 "code": error.get("code", "step_failed")}
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "error", "finished_at"])
    stop_active_steps(run, reason="failure")
    from automation.services import notifications

    notifications.run_finished(run)


def stop_active_steps(run: Run, *, reason: str) -> None:
    """Cancel what has not finished; remembered so a retry can bring it back."""
    for step_run in StepRun.objects.filter(run=run, status__in=ACTIVE):
        step_run.state = {**step_run.state, "stopped_status": step_run.status, "stopped_by": reason}
        step_run.status = StepRun.Status.CANCELLED
        step_run.save(update_fields=["state", "status"])
    ApprovalRequest.objects.filter(run=run, status=ApprovalRequest.Status.PENDING).update(
        status=ApprovalRequest.Status.CANCELLED
    )
