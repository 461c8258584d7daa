"""Child step executions (an agent's tool calls) and the durable state a step writes
while it runs (an agent's turns), docs/user-guide/agents.md.

A child is a step run with `parent` set, in its parent's scope, with the step id
`<parent step id>/<call id>`; the graph knows nothing of it, so nothing schedules it:
the parent's worker runs it and records it here. Every write carries the parent's claim
in its WHERE clause, so a worker whose lease was taken over writes nothing.
"""

from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from automation.definitions.steps.outcome import Outcome
from automation.exceptions import StepFailedError
from automation.models import StepRun
from automation.store.claims import Claim
from automation.store.state import StepState


class ClaimLostError(StepFailedError):
    """Another worker took the step over; this one stops without writing."""

    code = "claim_lost"


def _held(claim: Claim) -> bool:
    return StepRun.objects.filter(pk=claim.step_run.pk, claim=claim.step_run.claim,
                                  status=StepRun.Status.RUNNING).exists()


def save_running_state(claim: Claim, changes: dict, *, lease_seconds: int) -> None:
    """Write state keys of a claimed, running step now (before its outcome), and renew
    its lease: a step that keeps recording progress is not taken for lost."""
    step_run = claim.step_run
    state = StepState.from_json(step_run.state).merged(changes)
    updated = StepRun.objects.filter(pk=step_run.pk, claim=step_run.claim,
                                     status=StepRun.Status.RUNNING).update(
        state=state.to_json(),
        lease_expires_at=timezone.now() + timedelta(seconds=lease_seconds))
    if not updated:
        raise ClaimLostError("The step was taken over by another worker.", retryable=False)
    step_run.state = state.to_json()


def child_id(claim: Claim, name: str) -> str:
    return f"{claim.step_run.step_id}/{name}"


def find_child(claim: Claim, name: str) -> StepRun | None:
    step_run = claim.step_run
    return StepRun.objects.filter(run_id=step_run.run_id, scope=step_run.scope,
                                  step_id=child_id(claim, name), parent=step_run).first()


def start_child(claim: Claim, name: str, *, step_type: str, input) -> StepRun:
    """The child's row, running its first attempt (or the one found, when a lost worker
    started it: its attempt is kept, so the same idempotency key is sent again)."""
    found = find_child(claim, name)
    if found is not None:
        return found
    if not _held(claim):
        raise ClaimLostError("The step was taken over by another worker.", retryable=False)
    parent = claim.step_run
    try:
        with transaction.atomic():
            return StepRun.objects.create(
                run_id=parent.run_id, parent=parent, step_id=child_id(claim, name),
                step_type=step_type, scope=parent.scope, status=StepRun.Status.RUNNING,
                priority=parent.priority,
                attempt=1, input=input, started_at=timezone.now())
    except IntegrityError:  # raced with a worker that took the parent over
        raise ClaimLostError("The step was taken over by another worker.",
                             retryable=False) from None


def next_child_attempt(child: StepRun, log: str) -> None:
    child.attempt += 1
    child.logs = [*child.logs, {"message": log}]
    StepRun.objects.filter(pk=child.pk).update(attempt=child.attempt, logs=child.logs)


def finish_child(child: StepRun, outcome: Outcome, *, duration_ms: int) -> None:
    status = StepRun.Status.COMPLETED if outcome.kind == "completed" else StepRun.Status.FAILED
    child.status, child.output, child.error = status, outcome.output, outcome.error
    child.logs = [*child.logs, *outcome.logs]
    child.finished_at, child.duration_ms = timezone.now(), duration_ms
    StepRun.objects.filter(pk=child.pk).update(
        status=status, output=child.output, error=child.error, logs=child.logs,
        finished_at=child.finished_at, duration_ms=duration_ms)
