"""The run store's interface and its portable backend (the ORM: SQLite, any database).

Like Django's database backends: this class holds the portable behaviour, a vendor
backend (store.postgresql) overrides only what it does better, and callers ask
`features` instead of testing the vendor. Nothing outside this package writes runs or
step runs (tests/test_architecture.py holds every module to that).
"""

import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.db import connections, transaction
from django.db.models import F, Q, QuerySet, Value
from django.db.models.constants import OnConflict
from django.db.models.functions import Coalesce
from django.utils import timezone

import integrations.tracing as tracing
from automation.definitions import Step
from automation.definitions.steps.outcome import Outcome
from automation.exceptions import RunStateError
from automation.models import Run, StepRun
from automation.store import children, pruning, recording, settling, waiting
from automation.store.claims import Claim, Handover
from automation.store.doorbell import enqueue_many, enqueue_step
from automation.store.policy import step_timeout_seconds
from entities.db.compiled import CompiledInsert

# A run in one of these becomes `running` when one of its steps is claimed.
RUN_NOT_STARTED = (Run.Status.PENDING, Run.Status.WAITING)


@dataclass(frozen=True)
class StoreFeatures:
    # A claim and the common records are one statement each, committed on their own.
    one_statement: bool = False
    # A run's start can be joined to another statement (the event dispatch's claim).
    start_in_statement: bool = False


_RUN_FIELDS = [f for f in Run._meta.concrete_fields if not f.generated]  # its pk is a UUID
_RUN_INSERTS = {key: CompiledInsert(Run, fields=_RUN_FIELDS, on_conflict=conflict)
                for key, conflict in ((True, OnConflict.IGNORE), (False, None))}


def trace_run(run: Run) -> None:
    """Give a new run its trace (docs/operating.md#tracing): a child of the current
    span (an inbound traceparent, the step that starts it) or a new trace. Nothing while
    tracing is off."""
    if not run.traceparent:
        context = tracing.run_context()
        if context is not None:
            run.traceparent, run.trace_parent_id = context.traceparent, context.parent_span_id


def run_insert(run: Run) -> CompiledInsert:
    """A run with an idempotency key skips a conflict (INSERT … ON CONFLICT DO NOTHING;
    SQLite: INSERT OR IGNORE) and so writes nothing when the key is taken."""
    return _RUN_INSERTS[bool(run.idempotency_key)]


class RunStore:
    features = StoreFeatures()

    def __init__(self, using: str):
        self.using = using

    # -- starting ----------------------------------------------------------------------

    def start(self, run: Run, step_run: StepRun, first: Step) -> bool:
        """Write the run and its first step run together, or nothing when the run's
        idempotency key is taken (False); ring for the step after commit."""
        with transaction.atomic(using=self.using, savepoint=False):
            if not self._insert_run_and_step(run, step_run):
                return False
            enqueue_step(step_run.pk, timeout=step_timeout_seconds(first))
        return True

    def _insert_run_and_step(self, run: Run, step_run: StepRun) -> bool:
        if not self._insert_run(run):
            return False
        step_run.save(force_insert=True, using=self.using)
        return True

    def _insert_run(self, run: Run) -> bool:
        trace_run(run)
        if run.idempotency_key:
            sql, params = run_insert(run).sql_params(run, self.using)
            with connections[self.using].cursor() as cursor:
                cursor.execute(sql, params)
                inserted = cursor.rowcount
            if not inserted:
                return False
            run._state.adding, run._state.db = False, self.using
        else:
            run.save(force_insert=True, using=self.using)
        return True

    def start_rerun(self, run: Run, copies: list[StepRun], step_run: StepRun, first: Step,
                    *, also: list[tuple[StepRun, Step]] = ()) -> bool:
        """A re-run (docs/user-guide/operating-runs.md): the new run, the completed steps
        it keeps from the run it re-runs (`copies`, written as they were), and the step
        it starts from (and `also`, more steps that start again); rings for them after
        commit. With an idempotency key that
        is taken (a batch's second delivery) nothing is written (False)."""
        with transaction.atomic(using=self.using, savepoint=False):
            if not self._insert_run(run):
                return False
            for copy in copies:
                copy.run = run
            StepRun.objects.using(self.using).bulk_create(copies)  # in their old order
            step_run.save(force_insert=True, using=self.using)
            enqueue_step(step_run.pk, timeout=step_timeout_seconds(first))
            for other, step in also:  # more steps that start again (a retry's stopped branches)
                other.run = run
                other.save(force_insert=True, using=self.using)
                enqueue_step(other.pk, timeout=step_timeout_seconds(step))
        return True

    def start_statement(self, run: Run, step_run: StepRun, first: Step, *, source: str):
        """The start as CTEs of another statement, where the backend can (None here)."""
        return None

    def start_chunk(self, runs: list[Run], first: Step) -> int:
        """A batch's chunk of runs (unique per batch and entity: a second fan-out of the
        same chunk writes nothing), each with its first step run; rings for them all in
        one broker round trip. Returns how many runs were new."""
        with transaction.atomic(using=self.using, savepoint=False):
            for run in runs:
                trace_run(run)
            Run.objects.bulk_create(runs, ignore_conflicts=True)
            batch_id, entity_ids = runs[0].batch_id, [r.entity_id for r in runs]
            created = set(Run.objects.filter(batch_id=batch_id, entity_id__in=entity_ids,
                                             steps__isnull=True).values_list("pk", flat=True))
            steps = StepRun.objects.bulk_create([
                StepRun(run_id=run_id, step_id=first.id, step_type=first.type, input={})
                for run_id in created])
            step_ids = [s.pk for s in steps] if all(s.pk for s in steps) else list(
                StepRun.objects.filter(run_id__in=created).values_list("pk", flat=True))
            enqueue_many(step_ids, timeout=step_timeout_seconds(first))
        return len(created)

    # -- claiming ----------------------------------------------------------------------

    def claim(self, step_run_id: int, *, lease_seconds: int) -> Claim | None:
        """Take the step if it is due, or if the worker that held it let its lease expire.

        One conditional UPDATE decides, so two deliveries of one task cannot both win.
        """
        now = timezone.now()
        values = {"status": StepRun.Status.RUNNING, "claim": uuid.uuid4(),
                  "attempt": F("attempt") + 1, "started_at": now,
                  "lease_expires_at": now + timedelta(seconds=lease_seconds)}
        due = Q(status=StepRun.Status.PENDING) & (
            Q(not_before__isnull=True) | Q(not_before__lte=now))
        step_run = self._take(step_run_id, StepRun.objects.filter(due, pk=step_run_id), values)
        if step_run is not None:
            self._run_started(step_run)
            return Claim(step_run)
        # The holder's lease ran out. The attempt it never reported is remembered by this
        # very UPDATE (the right-hand side sees the old row): a worker killed again right
        # after it cannot make the next attempt send a key the outside has not seen.
        expired = StepRun.objects.filter(pk=step_run_id, status=StepRun.Status.RUNNING,
                                         lease_expires_at__lt=now)
        remembered = {**values, "key_attempt": Coalesce(F("key_attempt"), F("attempt"))}
        step_run = self._take(step_run_id, expired, remembered)
        if step_run is None:
            return None
        self._run_started(step_run)
        return Claim(step_run, reclaimed=True)

    def _run_started(self, step_run: StepRun) -> None:
        """A claimed step makes its run `running`: from `pending` (no worker had taken
        any step yet; the first claim also sets `started_at`) or from `waiting` (a
        retry's timer ran out). One conditional UPDATE, only when the run needs it; the
        PostgreSQL backend does it inside the claim's own statement
        (docs/rest-api.md#run-statuses)."""
        run = step_run.run
        if run.status not in (Run.Status.PENDING, Run.Status.WAITING):
            return
        now = timezone.now()
        Run.objects.filter(pk=run.pk, status__in=RUN_NOT_STARTED).update(
            status=Run.Status.RUNNING, started_at=Coalesce(F("started_at"), Value(now)))
        run.status = Run.Status.RUNNING
        run.started_at = run.started_at or now

    def _take(self, step_run_id: int, rows: QuerySet, values: dict) -> StepRun | None:
        if not rows.update(**values):
            return None
        return StepRun.objects.select_related("run__process").get(pk=step_run_id)

    def due_at(self, step_run_id: int):
        """When a pending step's retry is due (None: not pending)."""
        return StepRun.objects.filter(pk=step_run_id, status=StepRun.Status.PENDING
                                      ).values_list("not_before", flat=True).first()

    def must_flush_before(self, claim: Claim, *, cheap: bool) -> bool:
        """Whether the claim's commit may not have reached the disk, and the step (not
        cheap: it may call out) must make it durable first (see extend_lease)."""
        return False

    def extend_lease(self, claim: Claim, *, seconds: int) -> None:
        """Set the lease to the step's own time limit. An ordinary commit: it makes
        everything the run wrote so far durable too (entities.db.commits)."""
        StepRun.objects.filter(pk=claim.step_run.pk, claim=claim.step_run.claim).update(
            lease_expires_at=timezone.now() + timedelta(seconds=seconds))

    def note(self, claim: Claim, message: str) -> None:
        """Add a line to a claimed step's log now (before it runs)."""
        step_run = claim.step_run
        step_run.logs = [*step_run.logs, {"message": message}]
        StepRun.objects.filter(pk=step_run.pk, claim=step_run.claim).update(logs=step_run.logs)

    def release(self, claim: Claim) -> bool:
        """Give back a claim taken for inline running; the caller rings for the step."""
        step_run = claim.step_run
        return bool(StepRun.objects.filter(
            pk=step_run.pk, claim=step_run.claim, status=StepRun.Status.RUNNING).update(
            status=StepRun.Status.PENDING, claim=None, lease_expires_at=None, started_at=None,
            attempt=step_run.attempt - 1))

    # -- recording ---------------------------------------------------------------------

    def record(self, claim: Claim, outcome: Outcome, *, duration_ms: int,
               handover: Handover | None = None) -> None:
        recording.record(claim, outcome, duration_ms=duration_ms, handover=handover)

    def resume(self, step_run_id: int, outcome: Outcome) -> bool:
        """Finish a waiting step from outside a worker (an approval decided or timed out)."""
        return recording.resume(step_run_id, outcome)

    # -- a running step's own writes (an agent's turns and tool calls: store/children) ---

    def save_running_state(self, claim: Claim, changes: dict, *, lease_seconds: int) -> None:
        children.save_running_state(claim, changes, lease_seconds=lease_seconds)

    def find_child(self, claim: Claim, name: str) -> StepRun | None:
        return children.find_child(claim, name)

    def start_child(self, claim: Claim, name: str, *, step_type: str, input) -> StepRun:
        return children.start_child(claim, name, step_type=step_type, input=input)

    def next_child_attempt(self, child: StepRun, log: str) -> None:
        children.next_child_attempt(child, log)

    def finish_child(self, child: StepRun, outcome: Outcome, *, duration_ms: int) -> None:
        children.finish_child(child, outcome, duration_ms=duration_ms)

    def log_waiting(self, step_run_id: int, message: str, **data) -> bool:
        """Add a line to a waiting step's log, so the run records what happened while it
        waited (a reminder, an escalation, a re-issued approval request)."""
        with transaction.atomic(using=self.using):
            step_run = StepRun.objects.select_for_update().filter(
                pk=step_run_id, status=StepRun.Status.WAITING).first()
            if step_run is None:
                return False
            step_run.logs = [*step_run.logs, {"message": message, "at": timezone.now().isoformat(),
                                              **data}]
            StepRun.objects.filter(pk=step_run_id).update(logs=step_run.logs)
        return True

    # -- run control -------------------------------------------------------------------

    def cancel(self, run: Run) -> Run:
        with transaction.atomic(using=self.using):
            run = Run.objects.select_for_update().get(pk=run.pk)
            if run.is_finished:
                raise RunStateError(f"The run is already {run.status}.")
            run.status, run.finished_at = Run.Status.CANCELLED, timezone.now()
            run.error = {"message": "Cancelled.", "step": None, "code": "cancelled"}
            run.save(update_fields=["status", "finished_at", "error"])
            settling.stop_active_steps(run, reason="cancel")
            waiting.announce(run)
        return run

    # -- sweeping ----------------------------------------------------------------------

    def mark_rung(self, step_run_ids: list[int], at) -> None:
        """The sweeper rang for these (it rings each at most once per grace period)."""
        StepRun.objects.filter(pk__in=step_run_ids).update(rung_at=at)

    # -- retention ---------------------------------------------------------------------

    def prune_finished(self, before, *, chunk: int, after=None) -> pruning.Pruned:
        """Delete one chunk of runs finished before `before` with their step runs (one
        short transaction); call again with the returned cursor until it is None. A run
        not finished, or in a batch still going, is never deleted (store/pruning.py)."""
        return pruning.prune_chunk(self.using, before, chunk=chunk, after=after)

    def count_prunable(self, before) -> tuple[int, int]:
        """(runs, step runs) prune_finished would delete now."""
        return pruning.count_prunable(self.using, before)
