"""Execute one step: claim it, run its type, record the outcome; all writes go through
the run store (automation.store).

A redelivered task finds the step already claimed (or finished) and does nothing; a
step whose worker died is claimed again once its lease has expired.
"""

import time

from django.conf import settings
from django.utils import timezone

from automation.definitions import Step
from automation.definitions.steps import StepPolicy
from automation.definitions.steps.outcome import Outcome
from automation.engine import traces
from automation.engine.agents import Journal
from automation.engine.context import Execution
from automation.engine.scope import build_scope, load_entity
from automation.engine.steps import run_step
from automation.functions import StepContext
from automation.functions.redaction import redact
from automation.models import Run
from automation.store import Claim, RunStore, get_store
from automation.store.graphs import graph_for
from automation.store.pauses import is_paused
from automation.store.policy import policy
from entities.actors import acting_as

# A step whose worker keeps dying is given up after this many claims (docs/reliability.md).
CRASH_ATTEMPTS = 3

# Whether this worker claims its next step from a doorbell with a commit that waits for
# the disk: a step that may call out must not run on a claim that skipped the flush
# (store.must_flush_before), and a durable claim saves it a second statement (the
# flushing extend_lease) and a second commit. Which step a doorbell is for is known only
# once the claim has read it, so the claim follows the last step this worker ran: a
# guess either way is safe (a wrong "relaxed" is flushed by extend_lease as before, a
# wrong "durable" costs one flush a cheap step would have skipped). docs/performance.md
_claim_durably = {"next": True}


def execute_step(step_run_id: int) -> None:
    """Run the step, then the steps of its run it continues into, each committed before
    the next, within the bound (engine.context).

    The successors arrive already claimed by this worker and share the run row loaded
    for the first one: a run's input, trigger and version never change, and its status
    is read again under lock when each step is recorded.
    """
    store = get_store()
    if settings.Q_CLUSTER.get("sync"):
        _execute_one(store, claim_when_due(store, step_run_id), None)
        return
    execute_claimed(store, claim_when_due(store, step_run_id))


def execute_claimed(store: RunStore, claim: Claim | None) -> None:
    """execute_step for a step already claimed (or None: nothing to do)."""
    with Execution(store, max_steps=settings.ENTITYFLOW_CONTINUE_MAX_STEPS,
                   max_ms=settings.ENTITYFLOW_CONTINUE_MAX_MS) as execution:
        _execute_one(store, claim, execution)
        run = claim.step_run.run if claim is not None else None
        while execution:
            claim = execution.popleft()
            if run is not None and claim.step_run.run_id == run.pk:
                claim.step_run.run = run
            _execute_one(store, claim, execution)
            run = claim.step_run.run


def claim_group(store: RunStore, step_run_ids: list[int]) -> list[Claim]:
    """Claim the due ones of a chunk doorbell's steps together (engine.chunks), durably
    or not as claim_when_due decides for one."""
    return store.claim_group(step_run_ids, lease_seconds=settings.ENTITYFLOW_STEP_LEASE_SECONDS,
                             durable=_claim_durably["next"])


def grouped_outcome(store: RunStore, claim: Claim, function_rows: dict,
                    entities: dict | None = None) -> tuple | None:
    """Run a claimed step whose record may wait for others' (store.grouped): cheap (no
    outside effect), no time limit of its own and no successor to continue into.
    `entities`: the group's, loaded together (scope.load_entities). Returns
    `(outcome, duration_ms, span)` and leaves the record to the caller; None
    when it is not such a step (nothing done: execute_claimed runs it). A paused
    process's step is held, as _execute_one holds it: `(None, 0, None)`, nothing to
    record."""
    run = claim.step_run.run
    step = graph_for(run.version_id).steps[claim.step_run.step_id]
    rules = policy(step)
    _claim_durably["next"] = not rules.cheap
    if not rules.cheap or rules.timeout_seconds or step.next:
        return None
    if is_paused(run.process_id) and store.hold(
            claim, "the process is paused; it continues when the process is resumed"):
        return None, 0, None
    started = time.monotonic()
    with traces.step_span(run, claim.step_run, step) as span:
        outcome = _outcome(store, run, claim, step, rules, function_rows,
                           settings.ENTITYFLOW_STEP_LEASE_SECONDS, entities)
        traces.step_outcome(span, outcome.kind, outcome.error)
    return outcome, int((time.monotonic() - started) * 1000), span


def claim_when_due(store: RunStore, step_run_id: int) -> Claim | None:
    """Claim the step; one due in a few seconds is waited for here. A retry or deferral
    sends a delayed doorbell for its due time (store.delayed), so this wait is only for a
    doorbell a little early (another machine's clock) or rung without one (sync mode)."""
    lease, durable = settings.ENTITYFLOW_STEP_LEASE_SECONDS, _claim_durably["next"]
    claim = store.claim(step_run_id, lease_seconds=lease, durable=durable)
    if claim is None and _waited_for_backoff(store, step_run_id):
        claim = store.claim(step_run_id, lease_seconds=lease, durable=durable)
    return claim


def _waited_for_backoff(store: RunStore, step_run_id: int) -> bool:
    due = store.due_at(step_run_id)
    if due is None:
        return False
    wait = (due - timezone.now()).total_seconds()
    if wait > getattr(settings, "ENTITYFLOW_INLINE_BACKOFF_MAX_SECONDS", 10):
        return False
    time.sleep(max(wait, 0))  # due already (it passed since the claim was tried): claim now
    return True


def _execute_one(store: RunStore, claim: Claim | None, execution: Execution | None) -> None:
    if claim is None:
        return
    run = claim.step_run.run
    if is_paused(run.process_id) and store.hold(  # the step boundary: held until resumed
            claim, "the process is paused; it continues when the process is resumed"):
        return
    step = graph_for(run.version_id).steps[claim.step_run.step_id]
    rules = policy(step)
    _claim_durably["next"] = not rules.cheap
    margin = getattr(settings, "ENTITYFLOW_LEASE_MARGIN_SECONDS", 30)
    timeout = rules.timeout_seconds
    if timeout and execution is not None:
        # The broker kills this task at the step's time limit (doorbell.send_step), so
        # nothing may continue after it in the same task.
        execution.stop()
    lease = timeout + margin if timeout else settings.ENTITYFLOW_STEP_LEASE_SECONDS
    if lease != settings.ENTITYFLOW_STEP_LEASE_SECONDS or store.must_flush_before(
            claim, cheap=rules.cheap):
        # The lease follows the step's own time limit. And a step that may call out is
        # not run on a claim that skipped the disk flush: this ordinary commit makes
        # everything the run wrote so far durable first (entities.db.commits).
        store.extend_lease(claim, seconds=lease)
    started, was_finished = time.monotonic(), run.is_finished
    with traces.step_span(run, claim.step_run, step) as span:
        rows = execution.function_rows if execution is not None else None
        outcome = _outcome(store, run, claim, step, rules, rows, lease)
        store.record(claim, outcome, duration_ms=int((time.monotonic() - started) * 1000),
                     handover=execution)
        traces.step_outcome(span, outcome.kind, outcome.error)
    if span is not None and not was_finished:  # the record leaves the settled run here
        traces.run_ended(claim.step_run.run)


def _outcome(store: RunStore, run: Run, claim: Claim, step: Step, rules: StepPolicy,
             function_rows: dict | None, lease: int, entities: dict | None = None) -> Outcome:
    """`entities`: the group's entities loaded together (scope.load_entities), else the
    run's entity is loaded here."""
    if run.is_finished:
        return Outcome.failed("The run had already finished.", code="run_finished")
    lost = _lost_attempt(store, claim, step, rules)
    if lost is not None:
        return lost
    step_run = claim.step_run
    entity = (entities.get(run.entity_id) if entities is not None and run.entity_id
              else load_entity(run))
    scope = build_scope(run, step_run, entity, known_steps=claim.known_steps)
    claim.seen_steps = scope["steps"]
    ctx = StepContext(
        run_id=str(run.pk), step_id=step.id, attempt=step_run.attempt, input=step_run.input,
        params={}, scope=scope, entity=entity, idempotency_key=idempotency_key(claim),
        scope_key=step_run.scope, effect_origin=(run.trigger or {}).get("origin") or "",
        repeat_effects=bool((run.trigger or {}).get("repeatEffects")),
    )
    with acting_as(f"process:{run.process.slug}"):  # what the step writes names its process
        return _redacted(
            run_step(step, ctx, function_rows=function_rows,
                     journal=Journal(store, claim, lease))
        )


def idempotency_key(claim: Claim) -> str:
    """run:step:scope:attempt, where a re-run after a lost worker keeps the attempt that
    was lost: the outside system may have done the work, and must see the same key."""
    step_run = claim.step_run
    attempt = step_run.key_attempt or step_run.attempt
    return f"{step_run.run_id}:{step_run.step_id}:{step_run.scope}:{attempt}"


def _lost_attempt(store: RunStore, claim: Claim, step: Step,
                  rules: StepPolicy) -> Outcome | None:
    """The previous attempt never reported back: it timed out or its worker died.

    A step with a time limit gets its normal retries; one without gets a few more tries
    (a worker killed during a deploy is not the step's fault), then fails for good.
    """
    if not claim.reclaimed:
        return None
    previous = claim.step_run.attempt - 1
    limit_ms = rules.time_limit_ms
    allowed = rules.max_attempts if limit_ms else max(rules.max_attempts, CRASH_ATTEMPTS)
    if limit_ms:
        message = (f"Step '{step.id}' ran past its time limit of {limit_ms / 1000:g}s "
                   f"(attempt {previous}).")
        code = "step_timeout"
    else:
        message = f"Step '{step.id}' lost its worker (attempt {previous})."
        code = "step_lost"
    if previous >= allowed:
        return Outcome.failed(f"{message} Giving up after {previous} attempt(s).", code=code)
    store.note(claim, f"{message} Running it again.")
    return None


def _redacted(outcome: Outcome) -> Outcome:
    """Secrets of connections never reach run history (see functions.connectors)."""
    outcome.output = redact(outcome.output)
    outcome.error = redact(outcome.error)
    outcome.logs = redact(outcome.logs)
    return outcome
