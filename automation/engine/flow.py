"""After a step: record what it did and decide what runs next.

Everything here runs in one transaction that holds the run's row lock, so two workers
finishing sibling branches at the same moment cannot both miss (or both fire) a join.
"""

import random
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from automation.definitions import Graph
from automation.engine import one_statement, queue, settle
from automation.engine.graphs import graph_for, is_sequential
from automation.engine.outcome import Outcome
from automation.engine.queue import enqueue_step
from automation.models import ApprovalRequest, Run, StepRun


def step_timeout_seconds(step) -> int | None:
    timeout_ms = step.config.get("timeout") if step.type != "human" else None
    return int(timeout_ms / 1000) + 1 if timeout_ms else None


def is_cheap(step) -> bool:
    """Local work with no I/O, safe to run straight after its predecessor."""
    if step.type in ("condition", "parallel"):
        return True
    if step.type == "function" and not step.config.get("timeout"):
        from automation.functions.registry import all_actions

        spec = all_actions().get(step.raw.get("function"))
        return bool(spec and spec.cheap)
    return False


def max_attempts(step) -> int:
    return int(step.config.get("retries", 0)) + 1 if step.type == "function" else 1


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with jitter: base·2^(n-1), capped, then scaled by 50–100 %."""
    base = getattr(settings, "ENTITYFLOW_RETRY_BASE_SECONDS", 2.0)
    cap = getattr(settings, "ENTITYFLOW_RETRY_MAX_SECONDS", 600.0)
    return min(cap, base * 2 ** max(0, attempt - 1)) * random.uniform(0.5, 1.0)  # noqa: S311


def complete_step(step_run: StepRun, outcome: Outcome, *, duration_ms: int) -> None:
    """Record the outcome of a claimed step (ignored if the claim was lost meanwhile).

    `step_run` is the row as claimed: while the claim holds, nobody else writes it, so
    the recording UPDATE carries the claim in its WHERE clause instead of a re-read.
    The common case on PostgreSQL is one statement (one_statement.record_completed).
    """
    if one_statement.record_completed(step_run, outcome, duration_ms=duration_ms):
        return
    with transaction.atomic():
        run = _lock_run(step_run)
        step_run.logs = [*step_run.logs, *outcome.logs]
        step_run.duration_ms = duration_ms
        step_run.finished_at = timezone.now()
        if run.is_finished:
            _save(step_run, status=StepRun.Status.CANCELLED)
            return
        graph = graph_for(run.version_id)
        if _apply(run, graph, step_run, outcome) is False:
            return
        ended = step_run if step_run.status == StepRun.Status.COMPLETED and step_run.state.get(
            "terminal") else None
        settle.settle_run(run, graph, created=getattr(step_run, "followers", None), ended=ended)


def _lock_run(step_run: StepRun) -> Run:
    """The run's row, locked, with its status read again. Everything else a worker uses
    of a run (version, input, trigger, process) never changes, so the copy the claim
    loaded is kept instead of being read and decoded again."""
    loaded = step_run.run if StepRun.run.is_cached(step_run) else None
    if loaded is None:
        run = Run.objects.select_for_update().get(pk=step_run.run_id)
    else:
        run = loaded
        run.status = Run.objects.select_for_update().values_list("status", flat=True).get(pk=run.pk)
    step_run.run = run
    return run


def resume_step(step_run_id: int, outcome: Outcome) -> bool:
    """Finish a WAITING step from outside a worker (an approval decided or timed out)."""
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=StepRun.objects.values("run_id").get(pk=step_run_id)["run_id"])
        step_run = StepRun.objects.get(pk=step_run_id)
        if run.is_finished or step_run.status != StepRun.Status.WAITING:
            return False
        step_run.logs = [*step_run.logs, *outcome.logs]
        step_run.finished_at = timezone.now()
        graph = graph_for(run.version_id)
        _apply(run, graph, step_run, outcome)
        settle.settle_run(run, graph)
        return True


def _apply(run: Run, graph: Graph, step_run: StepRun, outcome: Outcome) -> bool:
    """Write the step's new state, then schedule what follows. False: the claim was lost
    (the row is no longer this worker's), nothing was written."""
    step = graph.steps[step_run.step_id]
    if outcome.kind == "failed":
        return _apply_failure(run, graph, step_run, step, outcome)
    if outcome.kind == "completed":
        targets = step.next if outcome.targets is None else outcome.targets
        step_run.state = {**step_run.state, **(outcome.state or {})}
        if not targets:
            step_run.state["terminal"] = True  # a branch ends here (see settle.branch_result)
        if not _save(step_run, status=StepRun.Status.COMPLETED, output=outcome.output, error=None):
            return False
        follow(run, graph, step_run, targets, result=outcome.output)
    elif outcome.kind == "waiting":
        step_run.state = {**step_run.state, **(outcome.state or {})}
        if not _save(step_run, status=StepRun.Status.WAITING):
            return False
        _open_approval(run, step_run, outcome.state or {})
    elif outcome.kind == "loop":
        step_run.state = {**(outcome.state or {}), "current": 0}
        if not _save(step_run, status=StepRun.Status.WAITING):
            return False
        if step_run.state["items"]:
            settle.start_iteration(run, graph, step_run, 0)
        else:
            settle.finish_loop(run, graph, step_run)
    return True


def _apply_failure(run: Run, graph: Graph, step_run: StepRun, step, outcome: Outcome) -> bool:
    error = {**(outcome.error or {}), "step": step_run.step_id}
    step_run.key_attempt = None  # this attempt reported back: a retry sends a new key
    if outcome.retryable and step_run.attempt < max_attempts(step):
        delay = max(backoff_seconds(step_run.attempt), outcome.retry_after or 0)
        step_run.logs.append({"message": f"attempt {step_run.attempt} failed: {error['message']}; "
                                         f"retrying in {delay:.1f}s"})
        if not _save(step_run, status=StepRun.Status.PENDING, error=error,
                     not_before=timezone.now() + timedelta(seconds=delay), claim=None,
                     lease_expires_at=None):
            return False
        enqueue_step(step_run.pk, timeout=step_timeout_seconds(step))
        return True
    if step.on_error:
        step_run.state = {**step_run.state, "handled": True}
    if not _save(step_run, status=StepRun.Status.FAILED, error=error):
        return False
    if step.on_error:
        follow(run, graph, step_run, [step.on_error], result={"error": error, "input": step_run.input})
    else:
        settle.fail_run(run, step_run, error)
    return True


def follow(run: Run, graph: Graph, from_run: StepRun, targets: list[str], *, result: Any,
           scope: str | None = None) -> None:
    """Schedule `targets` after `from_run`; no target means a branch ended here.

    A cheap target is written already claimed by this worker when it has inline budget
    left (queue.take_inline); every other one gets a doorbell after commit. The new rows
    are noted on `from_run.followers` (settle.settle_run can then skip a re-read).
    """
    scope = from_run.scope if scope is None else scope
    if not targets:
        if not from_run.state.get("terminal"):
            from_run.state = {**from_run.state, "terminal": True}
            from_run.save(update_fields=["state"])
        return
    followers = []
    for target in targets:
        step = graph.steps[target]
        if graph.is_join(target):
            settle.arrive_at_join(run, step, scope, from_run.step_id, result)
            continue
        claimed = queue.take_inline(is_cheap(step))
        new = StepRun.objects.create(run=run, step_id=target, step_type=step.type, scope=scope,
                                     input=result, index=from_run.index if scope else None,
                                     **(claimed or {}))
        if claimed:
            new.reclaimed = False
            new.known_steps = _known_steps(run, from_run)
            queue.run_here(new)
        else:
            enqueue_step(new.pk, timeout=step_timeout_seconds(step))
        followers.append(new)
    from_run.followers = followers


def _known_steps(run: Run, from_run: StepRun) -> dict | None:
    """What `steps` holds for the successor of `from_run` in a sequential run (see
    graphs.is_sequential), so the successor need not read it again; None otherwise."""
    seen = getattr(from_run, "scope_steps", None)
    if seen is None or from_run.status != StepRun.Status.COMPLETED:
        return None
    if not is_sequential(run.version_id):
        return None
    return {**seen, from_run.step_id: {"output": from_run.output}}


def _open_approval(run: Run, step_run: StepRun, state: dict) -> None:
    from django.utils.dateparse import parse_datetime

    approval = ApprovalRequest.objects.create(
        run=run, step_run=step_run, approvers=state.get("approvers", []),
        required_approvals=state.get("requiredApprovals", 1),
        deadline=parse_datetime(state["deadline"]) if state.get("deadline") else None,
        context={"process": run.process.name, "step": step_run.step_id, "input": step_run.input},
    )
    from automation.services import notifications

    notifications.approval_requested(approval)


RECORDED = ("status", "output", "error", "logs", "state", "attempt", "claim", "not_before",
            "lease_expires_at", "started_at", "finished_at", "duration_ms", "key_attempt")


def _save(step_run: StepRun, **changes) -> bool:
    """Write what a step's run records. A claimed row (RUNNING with this worker's claim)
    is written only if it is still so: False when the claim was lost meanwhile."""
    claim = step_run.claim
    held = step_run.status == StepRun.Status.RUNNING and claim is not None
    for key, value in changes.items():
        setattr(step_run, key, value)
    rows = StepRun.objects.filter(pk=step_run.pk)
    if held:
        rows = rows.filter(claim=claim, status=StepRun.Status.RUNNING)
    return bool(rows.update(**{name: getattr(step_run, name) for name in RECORDED}))
