"""After a step: record what it did and write what runs next.

Everything here runs in one transaction that holds the run's row lock, so two workers
finishing sibling branches at the same moment cannot both miss (or both fire) a join.
"""

from datetime import timedelta

from django.db import connections, router, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from automation.definitions import Graph, Step
from automation.definitions.steps import step_type
from automation.definitions.steps.outcome import Outcome
from automation.definitions.steps.process import child_outcome
from automation.models import ApprovalRequest, Run, StepRun
from automation.store import hooks, settling, subprocesses, waits
from automation.store.claims import Claim, Handover
from automation.store.doorbell import enqueue_step
from automation.store.graphs import graph_for
from automation.store.policy import backoff_seconds, max_attempts, step_timeout_seconds
from automation.store.state import StepState
from automation.store.successors import finish_loop, follow, start_iteration
from entities.db.compiled import CompiledStatement


def record(claim: Claim, outcome: Outcome, *, duration_ms: int,
           handover: Handover | None = None) -> None:
    """Record the outcome of a claimed step (ignored if the claim was lost meanwhile).

    The row is as claimed: while the claim holds, nobody else writes it, so the
    recording UPDATE carries the claim in its WHERE clause instead of a re-read.
    """
    step_run = claim.step_run
    with transaction.atomic():
        run = _lock_run(step_run)
        step_run.logs = [*step_run.logs, *outcome.logs]
        step_run.duration_ms = duration_ms
        step_run.finished_at = timezone.now()
        if run.is_finished:
            _save(step_run, status=StepRun.Status.CANCELLED)
            return
        graph = graph_for(run.version_id)
        followers = _apply(run, graph, step_run, outcome, handover=handover,
                           seen_steps=claim.seen_steps)
        if followers is None:
            return
        ended = step_run if step_run.status == StepRun.Status.COMPLETED and StepState.from_json(
            step_run.state).terminal else None
        settling.settle_run(run, graph, created=followers, ended=ended, handover=handover)


def _lock_run(step_run: StepRun) -> Run:
    """The run's row, locked, with its status read again. Everything else a worker uses
    of a run (version, input, trigger, process) never changes, so the copy the claim
    loaded is kept instead of being read and decoded again."""
    loaded = step_run.run if StepRun.run.is_cached(step_run) else None
    if loaded is None:
        run = Run.objects.select_for_update().get(pk=step_run.run_id)
    else:
        run = loaded
        using = router.db_for_write(Run)
        sql, params = _RUN_STATUS.sql_params(using, run.pk)
        with connections[using].cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        if row is None:
            raise Run.DoesNotExist(f"run {run.pk}")
        run.status = row[0]
    step_run.run = run
    return run


# The run's status under its row lock (_lock_run): the same SELECT at every record,
# compiled once per database (building and compiling the queryset was a sixth of a
# record's Python time on SQLite).
_RUN_STATUS = CompiledStatement(
    lambda using, pk: Run.objects.select_for_update().filter(pk=pk).values_list(
        "status").query.get_compiler(using=using).as_sql(),
    lambda connection, pk: [Run._meta.pk.get_db_prep_value(pk, connection)])


def resume(step_run_id: int, outcome: Outcome, *, child_run: str | None = None) -> bool:
    """Finish a WAITING step from outside a worker (an approval decided or timed out, a
    sub-process ended: `child_run`, only if the step still waits for that one; an earlier
    attempt's child ending late must not finish a later attempt)."""
    with transaction.atomic():
        run_id = StepRun.objects.values_list("run_id", flat=True).get(pk=step_run_id)
        run = Run.objects.select_for_update().get(pk=run_id)
        step_run = StepRun.objects.get(pk=step_run_id)
        if run.is_finished or step_run.status != StepRun.Status.WAITING:
            return False
        if child_run is not None and StepState.from_json(step_run.state).childRun != child_run:
            return False
        step_run.logs = [*step_run.logs, *outcome.logs]
        step_run.finished_at = timezone.now()
        waits.close_wait(step_run_id)
        graph = graph_for(run.version_id)
        _apply(run, graph, step_run, outcome)
        settling.settle_run(run, graph)
        return True


def resume_parent(run: Run) -> bool:
    """Run-end hook: a child run ended (completed, failed or cancelled) in this
    transaction; the parent's waiting step finishes with it. Nothing (False) when the
    parent step no longer waits for this child (the parent was cancelled, a later
    attempt started another child, or a repeat of this call)."""
    if run.parent_step_run_id is None:
        return False
    outcome = child_outcome(subprocesses.describe(run))
    if outcome is None:
        return False
    outcome.logs = [{"message": f"sub-process execution {run.pk} {run.status}",
                     "data": {"executionId": str(run.pk)}}]
    return resume(run.parent_step_run_id, outcome, child_run=str(run.pk))


def _apply(run: Run, graph: Graph, step_run: StepRun, outcome: Outcome, *,
           handover: Handover | None = None, seen_steps: dict | None = None
           ) -> list[StepRun] | None:
    """Write the step's new state, then schedule what follows: the new step runs. None:
    the claim was lost (the row is no longer this worker's), nothing was written."""
    step = graph.steps[step_run.step_id]
    state = StepState.from_json(step_run.state)
    if outcome.kind == "deferred":
        return _apply_deferral(step_run, step, outcome)
    if outcome.kind == "failed":
        return _apply_failure(run, graph, step_run, step, outcome, handover=handover)
    if outcome.kind == "completed":
        targets = step.next if outcome.targets is None else outcome.targets
        state = state.merged(outcome.state)
        state.terminal = state.terminal or not targets  # a branch ends here
        step_run.state = state.to_json()
        if not _save(step_run, status=StepRun.Status.COMPLETED, output=outcome.output, error=None):
            return None
        return follow(run, graph, step_run, targets, result=outcome.output, handover=handover,
                      seen_steps=seen_steps)
    if outcome.kind == "waiting":
        state = state.merged(outcome.state)
        step_run.state = state.to_json()
        if not _save(step_run, status=StepRun.Status.WAITING):
            return None
        if state.childRun:
            # The child may have ended before this record took the parent's lock; its
            # end hook found the step still running then, so its end is applied here.
            ended = subprocesses.ended_outcome(state.childRun)
            if ended is not None:
                return _apply(run, graph, step_run, ended, handover=handover,
                              seen_steps=seen_steps)
        if step_type(step.type).waits_for_people:
            _open_approval(run, step_run)
        elif state.waitingFor:  # a wait for a time or an event (docs/user-guide/waits.md)
            waits.open_wait(run, step_run, state.waitingFor)
        return []
    # a loop: its items are known, its body runs once per item
    state = StepState.from_json({**(outcome.state or {}), "current": 0})
    step_run.state = state.to_json()
    if not _save(step_run, status=StepRun.Status.WAITING):
        return None
    if state.items:
        start_iteration(run, graph, step_run, 0, handover=handover)
    else:
        finish_loop(run, graph, step_run, handover=handover)
    return []


def _apply_failure(run: Run, graph: Graph, step_run: StepRun, step: Step,
                   outcome: Outcome, *, handover: Handover | None = None
                   ) -> list[StepRun] | None:
    error = {**(outcome.error or {}), "step": step_run.step_id}
    step_run.key_attempt = None  # this attempt reported back: a retry sends a new key
    if outcome.retryable and step_run.attempt < max_attempts(step):
        delay = max(backoff_seconds(step_run.attempt), outcome.retry_after or 0)
        step_run.logs.append({"message": f"attempt {step_run.attempt} failed: {error['message']}; "
                                         f"retrying in {delay:.1f}s",
                              # the entity's timeline reads these (docs/user-guide/timeline.md)
                              "at": timezone.now().isoformat(), "event": "attempt_failed",
                              "attempt": step_run.attempt, "error": error["message"]})
        due = timezone.now() + timedelta(seconds=delay)
        if not _save(step_run, status=StepRun.Status.PENDING, error=error, not_before=due,
                     claim=None, lease_expires_at=None):
            return None
        enqueue_step(step_run.pk, timeout=step_timeout_seconds(step), priority=step_run.priority,
                     due=due)  # a delayed doorbell (store.delayed): no worker sleeps
        return []
    if step.on_error:
        state = StepState.from_json(step_run.state)
        state.handled = True
        step_run.state = state.to_json()
    if not _save(step_run, status=StepRun.Status.FAILED, error=error):
        return None
    if step.on_error:
        return follow(run, graph, step_run, [step.on_error],
                      result={"error": error, "input": step_run.input}, handover=handover)
    settling.fail_run(run, step_run, error)
    return []


def _apply_deferral(step_run: StepRun, step: Step, outcome: Outcome) -> list[StepRun] | None:
    """Not yet (a rate limit has no free request): the step goes back to pending, due
    when one should be free. Not a failure and not an attempt (the claim's count is
    given back, so its idempotency key stays the one nothing was sent with). Its log
    says so once; a step put off again updates that line instead of adding one."""
    now = timezone.now()
    due = now + timedelta(seconds=outcome.retry_after or 0)
    message = (outcome.error or {}).get("message", "Delayed by a rate limit.")
    logs = list(step_run.logs)
    last = logs[-1] if logs else None
    times = last.get("times", 1) + 1 if last and last.get("event") == "rate_limited" else 1
    line = {"message": message if times == 1 else f"{message} (put off {times} times)",
            "at": now.isoformat(), "event": "rate_limited", "times": times,
            "until": due.isoformat()}
    step_run.logs = [*logs[:-1], line] if times > 1 else [*logs, line]
    if not _save(step_run, status=StepRun.Status.PENDING, not_before=due, claim=None,
                 lease_expires_at=None, started_at=None, finished_at=None, duration_ms=None,
                 attempt=step_run.attempt - 1):
        return None
    enqueue_step(step_run.pk, timeout=step_timeout_seconds(step), priority=step_run.priority,
                 due=due)
    return []


def _open_approval(run: Run, step_run: StepRun) -> None:
    state = StepState.from_json(step_run.state)
    approval = ApprovalRequest.objects.create(
        run=run, step_run=step_run, approvers=state.approvers or [],
        required_approvals=state.requiredApprovals or 1,
        deadline=parse_datetime(state.deadline) if state.deadline else None,
        context={"process": run.process.name, "step": step_run.step_id, "input": step_run.input},
    )
    hooks.approval_requested(approval)


RECORDED = ("status", "output", "error", "logs", "state", "attempt", "claim", "not_before",
            "lease_expires_at", "started_at", "finished_at", "duration_ms", "key_attempt")


def _save(step_run: StepRun, **changes) -> bool:
    """Write what a step's run records. A claimed row (RUNNING with this worker's claim)
    is written only if it is still so: False when the claim was lost meanwhile."""
    claim = step_run.claim
    held = step_run.status == StepRun.Status.RUNNING and claim is not None
    for key, value in changes.items():
        setattr(step_run, key, value)
    filters = {"pk": step_run.pk}
    if held:
        filters.update(claim=claim, status=StepRun.Status.RUNNING)
    values = {name: getattr(step_run, name) for name in RECORDED}
    using = router.db_for_write(StepRun)
    try:  # the same UPDATE every step: compiled once per shape (entities.db.compiled)
        sql, params = settling.STEP_UPDATE.sql_params(filters, values, using)
    except ValueError:  # an expression among the values: Django compiles it
        return bool(StepRun.objects.filter(**filters).update(**values))
    with connections[using].cursor() as cursor:
        cursor.execute(sql, params)
        return bool(cursor.rowcount)
