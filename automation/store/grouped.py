"""Steps of a chunk doorbell recorded together (docs/architecture.md, "Chunk doorbells").

A batch's one-step runs are each a claim and a record with the run's end. The chunk's
task (engine.chunks) claims several of its steps in one statement (RunStore.claim_group)
and, for steps with no outside effect (cheap: local work, no I/O), records them here
together with their runs' ends in ONE transaction, instead of one commit per step.

Why that is safe: the group's commit is an ordinary (flushed) one, so nothing of it is
visible before it is durable; until it commits every step of the group is still
`running` under this worker's lease. A worker killed before the commit leaves all of
them to the sweeper (their leases run out and they are claimed again), and a step that
has no outside effect may be run again without anyone outside seeing it twice. Steps
that may call out never come here: they are claimed durably and recorded one by one.

The usual case, a completed step that ends its sequential run, is written set-based:
the runs' rows locked in one statement, the step rows and the runs' ends each one
`executemany` of the same UPDATE the one-step record sends, and the run-end hooks asked
once per group whether they have work (store.hooks.runs_ended). Anything else (a
failure, a successor, a run no longer running) is recorded the general way
(store.recording.record) in the same transaction. A claim found lost meanwhile rolls
the group back and each step is recorded on its own, as its own doorbell would have.
"""

from collections import defaultdict

from django.db import connections, transaction
from django.utils import timezone

from automation.definitions.steps.outcome import Outcome
from automation.models import Run, StepRun
from automation.store import hooks, recording, waiting
from automation.store.claims import Claim
from automation.store.graphs import graph_for, is_sequential
from automation.store.settling import RUN_UPDATE, STEP_UPDATE
from automation.store.state import StepState


class _ClaimLost(Exception):
    """A step of the group was no longer this worker's: undo the group."""


def record_group(store, items: list[tuple[Claim, Outcome, int]]) -> None:
    """Record `(claim, outcome, duration_ms)` of steps with no outside effect in one
    transaction (see above); falls back to one record each when a claim was lost."""
    if not items:
        return
    try:
        with transaction.atomic(using=store.using):
            _record_together(store.using, items)
    except _ClaimLost:
        for claim, outcome, duration_ms in items:  # nothing in memory was changed yet
            store.record(claim, outcome, duration_ms=duration_ms)


def _ends_run(claim: Claim, outcome: Outcome) -> bool:
    """A completed step that ends its run by itself: the run has one branch (sequential)
    and no concurrency rule (whose end admits queued runs: store.gates)."""
    step_run = claim.step_run
    if not (outcome.kind == "completed" and step_run.status == StepRun.Status.RUNNING
            and step_run.claim is not None and StepRun.run.is_cached(step_run)):
        return False
    run = step_run.run
    if run.concurrency_key is not None or not is_sequential(run.version_id):
        return False
    step = graph_for(run.version_id).steps[step_run.step_id]
    targets = step.next if outcome.targets is None else outcome.targets
    return not targets


def _record_together(using: str, items: list[tuple[Claim, Outcome, int]]) -> None:
    runs = {claim.step_run.run_id for claim, _, _ in items}
    # locked in the order of their ids, so two groups never wait on each other in a circle
    statuses = dict(Run.objects.using(using).select_for_update().filter(pk__in=runs)
                    .order_by("pk").values_list("pk", "status"))
    together, alone = [], []
    for item in items:
        claim, outcome, _ = item
        running = statuses.get(claim.step_run.run_id) == Run.Status.RUNNING
        (together if running and _ends_run(claim, outcome) else alone).append(item)
    if together:
        _end_runs(using, together)
    for claim, outcome, duration_ms in alone:  # the general way, in this transaction
        recording.record(claim, outcome, duration_ms=duration_ms)


def _end_runs(using: str, items: list[tuple[Claim, Outcome, int]]) -> None:
    now = timezone.now()
    step_rows, run_rows = defaultdict(list), defaultdict(list)
    recorded_rows = []
    for claim, outcome, duration_ms in items:
        step_run = claim.step_run
        state = StepState.from_json(step_run.state).merged(outcome.state)
        state.terminal = True  # the only branch, and so the run, ends here
        recorded = {"status": StepRun.Status.COMPLETED, "output": outcome.output, "error": None,
                    "logs": [*step_run.logs, *outcome.logs], "state": state.to_json(),
                    "finished_at": now, "duration_ms": duration_ms}
        values = {name: recorded.get(name, getattr(step_run, name))
                  for name in recording.RECORDED}
        sql, params = STEP_UPDATE.sql_params(
            {"pk": step_run.pk, "claim": step_run.claim, "status": StepRun.Status.RUNNING},
            values, using)
        step_rows[sql].append(params)
        sql, params = RUN_UPDATE.sql_params(
            {"pk": step_run.run_id}, {"status": Run.Status.COMPLETED,
                                      "result": outcome.output, "finished_at": now}, using)
        run_rows[sql].append(params)
        recorded_rows.append((step_run, recorded, outcome))
    with connections[using].cursor() as cursor:
        written = 0
        for sql, rows in step_rows.items():
            cursor.executemany(sql, rows)
            written += cursor.rowcount
        if written != len(items):
            raise _ClaimLost
        for sql, rows in run_rows.items():
            cursor.executemany(sql, rows)
    ended = []
    for step_run, recorded, outcome in recorded_rows:
        for name, value in recorded.items():
            setattr(step_run, name, value)
        run = step_run.run
        run.status, run.result, run.finished_at = Run.Status.COMPLETED, outcome.output, now
        ended.append(run)
    hooks.runs_ended(ended, "workflow.completed")
    for run in ended:
        waiting.announce(run)
