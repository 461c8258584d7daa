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
from django.db.models import F, Q, QuerySet
from django.db.models.constants import OnConflict
from django.db.models.functions import Coalesce
from django.utils import timezone

from automation.definitions import Step
from automation.definitions.steps.outcome import Outcome
from automation.exceptions import RunStateError
from automation.models import ApprovalRequest, Run, StepRun
from automation.store import pruning, recording, settling, waiting
from automation.store.claims import Claim, Handover
from automation.store.doorbell import enqueue_many, enqueue_step
from automation.store.graphs import graph_for
from automation.store.policy import step_timeout_seconds
from automation.store.state import StepState
from entities.db.compiled import CompiledInsert


@dataclass(frozen=True)
class StoreFeatures:
    # A claim and the common records are one statement each, committed on their own.
    one_statement: bool = False
    # A run's start can be joined to another statement (the event dispatch's claim).
    start_in_statement: bool = False


_RUN_FIELDS = [f for f in Run._meta.concrete_fields if not f.generated]  # its pk is a UUID
_RUN_INSERTS = {key: CompiledInsert(Run, fields=_RUN_FIELDS, on_conflict=conflict)
                for key, conflict in ((True, OnConflict.IGNORE), (False, None))}


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
        step_run.save(force_insert=True, using=self.using)
        return True

    def start_statement(self, run: Run, step_run: StepRun, first: Step, *, source: str):
        """The start as CTEs of another statement, where the backend can (None here)."""
        return None

    def start_chunk(self, runs: list[Run], first: Step) -> int:
        """A batch's chunk of runs (unique per batch and entity: a second fan-out of the
        same chunk writes nothing), each with its first step run; rings for them all in
        one broker round trip. Returns how many runs were new."""
        with transaction.atomic(using=self.using, savepoint=False):
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
            return Claim(step_run)
        # The holder's lease ran out. The attempt it never reported is remembered by this
        # very UPDATE (the right-hand side sees the old row): a worker killed again right
        # after it cannot make the next attempt send a key the outside has not seen.
        expired = StepRun.objects.filter(pk=step_run_id, status=StepRun.Status.RUNNING,
                                         lease_expires_at__lt=now)
        remembered = {**values, "key_attempt": Coalesce(F("key_attempt"), F("attempt"))}
        step_run = self._take(step_run_id, expired, remembered)
        return None if step_run is None else Claim(step_run, reclaimed=True)

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

    def retry(self, run: Run) -> Run:
        """Retry a failed run from its failed step; what the failure stopped resumes too."""
        with transaction.atomic(using=self.using):
            run = Run.objects.select_for_update().get(pk=run.pk)
            if run.status != Run.Status.FAILED:
                raise RunStateError(
                    f"Only a failed run can be retried; this one is {run.status}.")
            graph = graph_for(run.version_id)
            failed = [s for s in StepRun.objects.filter(run=run, status=StepRun.Status.FAILED)
                      if not StepState.from_json(s.state).handled]
            if not failed:
                raise RunStateError("The run has no failed step to retry.")
            for step_run in failed:
                _requeue(step_run, graph.steps[step_run.step_id], log="retried by staff")
            for step_run in StepRun.objects.filter(run=run, status=StepRun.Status.CANCELLED,
                                                   state__stopped_by="failure"):
                _restore(step_run, graph.steps[step_run.step_id])
            run.status, run.error, run.finished_at = Run.Status.RUNNING, None, None
            run.save(update_fields=["status", "error", "finished_at"])
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


def _requeue(step_run: StepRun, step: Step, *, log: str) -> None:
    step_run.status, step_run.claim, step_run.not_before = StepRun.Status.PENDING, None, None
    step_run.lease_expires_at, step_run.error = None, None
    step_run.logs = [*step_run.logs, {"message": log}]
    step_run.save()
    enqueue_step(step_run.pk, timeout=step_timeout_seconds(step))


def _restore(step_run: StepRun, step: Step) -> None:
    state = StepState.from_json(step_run.state)
    previous = state.stopped_status or StepRun.Status.PENDING
    state.stopped_status = state.stopped_by = None
    if previous == StepRun.Status.RUNNING:
        previous = StepRun.Status.PENDING
    step_run.state = state.to_json()
    step_run.status = previous
    step_run.claim = None
    step_run.save()
    if previous == StepRun.Status.PENDING:
        enqueue_step(step_run.pk, timeout=step_timeout_seconds(step))
    else:  # waiting again: a human step's approval is open again (joins and loops have none)
        ApprovalRequest.objects.filter(step_run=step_run).update(
            status=ApprovalRequest.Status.PENDING)
