"""PostgreSQL: claim a step, and record a completed one, in one statement each.

Claiming (executor.claim_step) is the conditional UPDATE and then a SELECT of the row
with its run and process; here the SELECT reads the UPDATE's RETURNING instead:

    WITH claimed AS (UPDATE step_run SET status = 'running', claim = … WHERE id = …
                     AND <due> RETURNING *)
    SELECT <the step run, its run and process> FROM claimed AS step_run JOIN run … JOIN …

Recording a completed step:

The general way (flow.complete_step) is a transaction of five round trips: BEGIN, the
run's row lock, the recording UPDATE, the successor's INSERT, COMMIT. When a step of a
run with no join and no loop completes into one successor, or ends a sequential run,
the same writes fit in one statement, atomic on its own (so the step's result is still
committed before its successor can start, docs/architecture.md):

    WITH run_row AS MATERIALIZED (SELECT status FROM run WHERE id = … FOR UPDATE),
         recorded AS (UPDATE step_run SET … WHERE id = … AND claim = <ours>
                      AND status = 'running'
                      AND EXISTS (SELECT 1 FROM run_row WHERE status = 'running')
                      RETURNING id),
         follower AS (INSERT INTO step_run (…) SELECT … FROM recorded RETURNING id)
         -- or, for the step that ends the run:
         finished AS (UPDATE run SET status = 'completed', … WHERE id = …
                      AND EXISTS (SELECT 1 FROM recorded))
    SELECT (SELECT count(*) FROM recorded), (SELECT id FROM follower)

These statements commit without waiting for the disk (entities.db.commits): still
committed, visible and atomic before the successor starts; only a crash of the database
server in the next fraction of a second could forget them, and then the work since the
last durable commit is done again, as after a lost worker (the same attempt, so the same
idempotency key). Nothing has left the system on the strength of them: before a step
that may call out runs, the executor makes an ordinary commit, which makes everything
written before it durable too; a run's end that has webhooks to write takes the general
way (an ordinary commit), and the webhook is sent after the delivery's own.

When the statement writes nothing (the claim was lost, the run is no longer running, or
a webhook subscription wants a delivery row for the run's end), nothing has changed and
the caller takes the general way, which knows what to do in each of those cases.
"""

from functools import lru_cache

from django.conf import settings
from django.db import connections, router
from django.db.models import QuerySet
from django.utils import timezone

from automation.definitions import Graph
from automation.engine import queue
from automation.engine.graphs import graph_for, is_plain, is_sequential
from automation.engine.outcome import Outcome
from automation.models import Run, StepRun, WebhookSubscription
from entities.db import commits
from entities.db.compiled import RowBuilder, insert_from, update_sql

RUN_END_EVENT = "workflow.completed"


def available() -> bool:
    """Statements here commit by themselves: PostgreSQL, outside any transaction."""
    return enabled() and not connections[router.db_for_write(StepRun)].in_atomic_block


def enabled() -> bool:
    """PostgreSQL, and not switched off (ENTITYFLOW_ONE_STATEMENT_STEPS = False); for a
    statement built now and run on its own later (the event dispatch's)."""
    return (connections[router.db_for_write(StepRun)].vendor == "postgresql"
            and getattr(settings, "ENTITYFLOW_ONE_STATEMENT_STEPS", True))


def claim(rows: QuerySet, values: dict) -> StepRun | None:
    """UPDATE `rows` (at most one step run) with `values` and return the row as
    `StepRun.objects.select_related("run__process")` loads it; None if none matched."""
    using = router.db_for_write(StepRun)
    connection = connections[using]
    claim_sql, claim_params = update_sql(rows, values, using)
    builder, select_from = _claimed_select(using)
    sql = f"WITH claimed AS ({claim_sql} RETURNING *) {select_from}"  # noqa: S608
    with connection.cursor() as cursor:
        commits.execute_alone(cursor, sql, claim_params, using=using)  # see claims_relaxed
        row = cursor.fetchone()
    return None if row is None else builder.build(row)


@lru_cache(maxsize=8)
def _claimed_select(using: str) -> tuple[RowBuilder, str]:
    """The step run with its run and process, read from `claimed` (compiled SQL only):
    the same for every claim, so compiled once per database."""
    compiler = StepRun.objects.select_related("run__process").order_by().query.get_compiler(
        using=using)
    select_sql, _ = compiler.as_sql()
    table = connections[using].ops.quote_name(StepRun._meta.db_table)
    head, found, joins = select_sql.partition(f" FROM {table} ")
    if not found or not joins.startswith("INNER JOIN") or " WHERE " in joins:
        raise RuntimeError(f"unexpected SELECT shape: {select_sql[:80]}")
    return RowBuilder(compiler), f"{head} FROM claimed AS {table} {joins}"


def claims_relaxed() -> bool:
    """Whether claims here skip the disk flush (entities.db.commits). A claim changes
    nothing anyone outside has seen; the executor makes an ordinary commit before a
    step that may call out starts."""
    return available() and commits.relaxed(router.db_for_write(StepRun))


def record_completed(step_run: StepRun, outcome: Outcome, *, duration_ms: int) -> bool:
    """True when the step (and its successor, or the run's end) is recorded; False when
    nothing was written and the general way must record it."""
    if not _applies(step_run, outcome):
        return False
    run = step_run.run
    graph = graph_for(run.version_id)
    step = graph.steps[step_run.step_id]
    targets = step.next if outcome.targets is None else outcome.targets
    ends_run = not targets and is_sequential(run.version_id)
    if len(targets) > 1 or (not targets and not ends_run):
        return False
    now = timezone.now()
    state = {**step_run.state, **(outcome.state or {})}
    if not targets:
        state["terminal"] = True  # the branch (here: the run) ends (see settle.branch_result)
    recorded = {"status": StepRun.Status.COMPLETED, "output": outcome.output, "error": None,
                "logs": [*step_run.logs, *outcome.logs], "state": state, "finished_at": now,
                "duration_ms": duration_ms}
    follower = _follower(run, graph, step_run, targets[0], outcome.output) if targets else None
    written, follower_pk = _execute(step_run, recorded, follower, ends_run=ends_run, now=now)
    if not written:
        return False
    for name, value in recorded.items():
        setattr(step_run, name, value)
    if follower is not None:
        _hand_over(run, graph, step_run, follower, follower_pk)
    else:
        run.status, run.result, run.finished_at = Run.Status.COMPLETED, outcome.output, now
    return True


def _applies(step_run: StepRun, outcome: Outcome) -> bool:
    return (outcome.kind == "completed" and available()
            and step_run.status == StepRun.Status.RUNNING and step_run.claim is not None
            and StepRun.run.is_cached(step_run) and is_plain(step_run.run.version_id))


def _follower(run: Run, graph: Graph, from_run: StepRun, target: str, result) -> StepRun:
    """The successor's row as flow.follow writes it: already claimed by this worker when
    it is cheap and the worker has inline budget left (queue.take_inline)."""
    from automation.engine.flow import is_cheap

    step = graph.steps[target]
    claimed = queue.take_inline(is_cheap(step))
    new = StepRun(run=run, step_id=target, step_type=step.type, scope=from_run.scope,
                  input=result, index=from_run.index if from_run.scope else None,
                  **(claimed or {}))
    new.claimed_here = bool(claimed)
    return new


def _execute(step_run: StepRun, recorded: dict, follower: StepRun | None, *, ends_run: bool,
             now) -> tuple[bool, int | None]:
    using = router.db_for_write(StepRun)
    connection = connections[using]
    qn = connection.ops.quote_name
    run_table, step_table = qn(Run._meta.db_table), qn(StepRun._meta.db_table)
    record_sql, record_params = update_sql(StepRun.objects.filter(
        pk=step_run.pk, claim=step_run.claim, status=StepRun.Status.RUNNING), recorded, using)
    parts = [f"run_row AS MATERIALIZED (SELECT {qn('status')} FROM {run_table} "  # noqa: S608
             f"WHERE {qn('id')} = %s FOR UPDATE)"]
    params: list = [step_run.run_id]
    guard = "EXISTS (SELECT 1 FROM run_row WHERE status = %s)"
    guard_params: list = [Run.Status.RUNNING]
    if ends_run:
        # notifications.notify writes a delivery row per matching subscription in the
        # run's last transaction: with one to write, the general way records this step
        guard += (f" AND NOT EXISTS (SELECT 1 FROM {qn(WebhookSubscription._meta.db_table)} "  # noqa: S608
                  f"WHERE {qn('active')} AND ({qn('events')} @> %s::jsonb "
                  f"OR {qn('events')} @> %s::jsonb))")
        guard_params += [f'["{RUN_END_EVENT}"]', '["*"]']
    # compiled SQL, quoted names and placeholders only; every value is a parameter
    parts.append(f"recorded AS ({record_sql} AND {guard} "  # noqa: S608
                 f"RETURNING {step_table}.{qn('id')})")
    params += [*record_params, *guard_params]
    select = "SELECT (SELECT count(*) FROM recorded), "
    if follower is not None:
        insert_sql, insert_params = insert_from(follower, "recorded", using)
        parts.append(f"follower AS ({insert_sql} RETURNING {qn('id')})")
        params += insert_params
        select += "(SELECT id FROM follower)"
    else:
        finish_sql, finish_params = update_sql(
            Run.objects.filter(pk=step_run.run_id), {"status": Run.Status.COMPLETED,
                                                     "result": recorded["output"],
                                                     "finished_at": now}, using)
        parts.append(f"finished AS ({finish_sql} AND EXISTS (SELECT 1 FROM recorded))")  # noqa: S608
        params += finish_params
        select += "NULL"
    sql = f"WITH {', '.join(parts)} {select}"  # noqa: S608 - compiled SQL only
    with connection.cursor() as cursor:
        commits.execute_alone(cursor, sql, params, using=using)
        count, follower_pk = cursor.fetchone()
    return bool(count), follower_pk


def _hand_over(run: Run, graph: Graph, from_run: StepRun, new: StepRun, pk: int) -> None:
    """What flow.follow does once the successor's row is written."""
    from automation.engine.flow import _known_steps, step_timeout_seconds

    new.pk = pk
    new._state.adding, new._state.db = False, router.db_for_write(StepRun)
    from_run.followers = [new]
    if new.claimed_here:
        new.reclaimed = False
        new.known_steps = _known_steps(run, from_run)
        queue.run_here(new)
    else:
        queue.enqueue_step(new.pk, timeout=step_timeout_seconds(graph.steps[new.step_id]))
