"""Execute one step: claim it atomically, run it, record the outcome.

A redelivered task finds the step already claimed (or finished) and does nothing; a
step whose worker died is claimed again once its lease has expired.
"""

import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from automation.engine import flow, one_statement
from automation.engine.graphs import graph_for
from automation.engine.outcome import Outcome
from automation.engine.scope import build_scope, load_entity
from automation.engine.steps import function_rows, run_step
from automation.functions import StepContext
from automation.models import Run, StepRun

# A step whose worker keeps dying is given up after this many claims (docs/reliability.md).
CRASH_ATTEMPTS = 3


def claim_step(step_run_id: int, *, lease_seconds: int) -> StepRun | None:
    """Take the step if it is due, or if the worker that held it let its lease expire.

    One conditional UPDATE decides, so two deliveries of one task cannot both win.
    The returned row (with its run and process) has `reclaimed` set when the previous
    attempt never reported back.
    """
    now = timezone.now()
    claim = {"status": StepRun.Status.RUNNING, "claim": uuid.uuid4(), "attempt": F("attempt") + 1,
             "lease_expires_at": now + timedelta(seconds=lease_seconds), "started_at": now}
    due = Q(status=StepRun.Status.PENDING) & (Q(not_before__isnull=True) | Q(not_before__lte=now))
    step_run = _take(step_run_id, StepRun.objects.filter(due, pk=step_run_id), claim)
    reclaimed = step_run is None
    if reclaimed:
        # The holder's lease ran out. The attempt it never reported is remembered by this
        # very UPDATE (the right-hand side sees the old row): a worker killed again right
        # after it cannot make the next attempt send a key the outside has not seen.
        expired = StepRun.objects.filter(pk=step_run_id, status=StepRun.Status.RUNNING,
                                         lease_expires_at__lt=now)
        remembered = {**claim, "key_attempt": Coalesce(F("key_attempt"), F("attempt"))}
        step_run = _take(step_run_id, expired, remembered)
        if step_run is None:
            return None
    step_run.reclaimed = reclaimed
    return step_run


def _take(step_run_id: int, rows, values: dict) -> StepRun | None:
    if one_statement.available():
        return one_statement.claim(rows, values)
    if not rows.update(**values):
        return None
    return StepRun.objects.select_related("run__process").get(pk=step_run_id)


def wait_for_backoff(step_run_id: int) -> bool:
    """A retry due in a few seconds is waited for here; longer ones go to the sweeper."""
    due = StepRun.objects.filter(pk=step_run_id, status=StepRun.Status.PENDING).values_list(
        "not_before", flat=True).first()
    if due is None:
        return False
    wait = (due - timezone.now()).total_seconds()
    if wait > getattr(settings, "ENTITYFLOW_INLINE_BACKOFF_MAX_SECONDS", 10):
        return False
    time.sleep(max(wait, 0))  # due already (it passed since the claim was tried): claim now
    return True


def execute_step(step_run_id: int) -> None:
    """Run the step, then any cheap steps it led to, each committed before the next.

    The cheap successors arrive already claimed by this worker (queue.take_inline) and
    share the run row loaded for the first one: a run's input, trigger and version never
    change, and its status is read again under lock when each step is recorded.
    """
    if settings.Q_CLUSTER.get("sync"):
        _execute_one(_claim(step_run_id))
        return
    from automation.engine.queue import inline_steps

    with inline_steps(getattr(settings, "ENTITYFLOW_INLINE_STEPS", 20)) as inline, function_rows():
        step_run = _claim(step_run_id)
        _execute_one(step_run)
        run = step_run.run if step_run is not None else None
        while inline:
            step_run = inline.popleft()
            if run is not None and step_run.run_id == run.pk:
                step_run.run = run
            _execute_one(step_run)
            run = step_run.run


def _claim(step_run_id: int) -> StepRun | None:
    lease = settings.ENTITYFLOW_STEP_LEASE_SECONDS
    step_run = claim_step(step_run_id, lease_seconds=lease)
    if step_run is None and wait_for_backoff(step_run_id):
        step_run = claim_step(step_run_id, lease_seconds=lease)
    return step_run


def _execute_one(step_run: StepRun | None) -> None:
    if step_run is None:
        return
    run = step_run.run
    step = graph_for(run.version_id).steps[step_run.step_id]
    timeout = flow.step_timeout_seconds(step)
    margin = getattr(settings, "ENTITYFLOW_LEASE_MARGIN_SECONDS", 30)
    lease = timeout + margin if timeout else settings.ENTITYFLOW_STEP_LEASE_SECONDS
    if lease != settings.ENTITYFLOW_STEP_LEASE_SECONDS or (
            one_statement.claims_relaxed() and not flow.is_cheap(step)):
        # The lease follows the step's own time limit. And a step that may call out is
        # not run on a claim that skipped the disk flush: this ordinary commit makes
        # everything the run wrote so far durable first (entities.db.commits).
        StepRun.objects.filter(pk=step_run.pk, claim=step_run.claim).update(
            lease_expires_at=timezone.now() + timedelta(seconds=lease))
    started = time.monotonic()
    outcome = _outcome(run, step_run, step)
    flow.complete_step(step_run, outcome, duration_ms=int((time.monotonic() - started) * 1000))


def _outcome(run: Run, step_run: StepRun, step) -> Outcome:
    if run.is_finished:
        return Outcome.failed("The run had already finished.", code="run_finished")
    lost = _lost_attempt(step_run, step)
    if lost is not None:
        return lost
    entity = load_entity(run)
    scope = build_scope(run, step_run, entity)
    step_run.scope_steps = scope["steps"]
    ctx = StepContext(
        run_id=str(run.pk), step_id=step.id, attempt=step_run.attempt, input=step_run.input,
        params={}, scope=scope, entity=entity, idempotency_key=idempotency_key(step_run),
    )
    return flow_redacted(run_step(step, ctx))


def idempotency_key(step_run: StepRun) -> str:
    """run:step:scope:attempt, where a re-run after a lost worker keeps the attempt that
    was lost: the outside system may have done the work, and must see the same key."""
    attempt = step_run.key_attempt or step_run.attempt
    return f"{step_run.run_id}:{step_run.step_id}:{step_run.scope}:{attempt}"


def _lost_attempt(step_run: StepRun, step) -> Outcome | None:
    """The previous attempt never reported back: it timed out or its worker died.

    A step with a time limit gets its normal retries; one without gets a few more tries
    (a worker killed during a deploy is not the step's fault), then fails for good.
    """
    if not getattr(step_run, "reclaimed", False):
        return None
    previous = step_run.attempt - 1
    limit_ms = step.config.get("timeout") if step.type != "human" else None
    allowed = flow.max_attempts(step) if limit_ms else max(flow.max_attempts(step), CRASH_ATTEMPTS)
    if limit_ms:
        message = f"Step '{step.id}' ran past its time limit of {limit_ms / 1000:g}s (attempt {previous})."
        code = "step_timeout"
    else:
        message = f"Step '{step.id}' lost its worker (attempt {previous})."
        code = "step_lost"
    if previous >= allowed:
        return Outcome.failed(f"{message} Giving up after {previous} attempt(s).", code=code)
    step_run.logs = [*step_run.logs, {"message": f"{message} Running it again."}]
    StepRun.objects.filter(pk=step_run.pk, claim=step_run.claim).update(logs=step_run.logs)
    return None


def flow_redacted(outcome: Outcome) -> Outcome:
    """Secrets of connections never reach run history (see functions.connectors)."""
    from automation.functions.redaction import redact

    outcome.output = redact(outcome.output)
    outcome.error = redact(outcome.error)
    outcome.logs = redact(outcome.logs)
    return outcome
