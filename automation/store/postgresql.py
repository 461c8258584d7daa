"""The PostgreSQL run store: a claim, a completed step's record and a run's start in one
statement each, planned once per connection where that pays; claims commit without
waiting for the disk. Whatever a statement cannot say takes the portable way (store.base).

Claiming (RunStore.claim) is the conditional UPDATE and then a SELECT of the row
with its run and process; here the SELECT reads the UPDATE's RETURNING instead:

    WITH claimed AS (UPDATE step_run SET status = 'running', claim = … WHERE id = …
                     AND <due> RETURNING *)
    SELECT <the step run, its run and process> FROM claimed AS step_run JOIN run … JOIN …

Recording a completed step:

The general way (store.recording.record) is a transaction of five round trips: BEGIN, the
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

A claim commits without waiting for the disk (entities.db.commits): it is internal
bookkeeping (who holds the step, until when); only a crash of the database server in the
next fraction of a second could forget it, and then the step is claimed again, as after
a lost worker (the same attempt, so the same idempotency key). Before a step that may
call out runs, the executor makes an ordinary commit, which makes the claim durable.

A recorded step is an ordinary (flushed) commit: its output is shown on the API
(`?expand=steps`), and a run's end is what a client polls for, so nothing of it may be
visible before it is durable (docs/operating.md, "Commits and the disk").

The end of a run under a concurrency rule adds the lock of its gate row (store.gates),
after the run's, as the general way takes them, and writes only if no run may be queued
behind the gate:

    gate_row AS MATERIALIZED (SELECT queued FROM gate WHERE process_id = … AND key = …
                              AND EXISTS (SELECT 1 FROM run_row) FOR UPDATE OF gate)
    -- and in `recorded`'s guard: AND EXISTS (SELECT 1 FROM gate_row WHERE NOT queued)

A row locked after a wait is read in its newest version, while every other read of the
statement keeps the snapshot taken when the statement began: a start that queued a run
behind this one and committed while the statement waited for the gate is seen only
through the gate row's `queued`, never through a NOT EXISTS over queued runs. That is
why the mark lives on the gate row. (A transaction that locks the gate first and then
records in one statement would see the runs too, but costs BEGIN, the lock and COMMIT:
four round trips instead of one.) Anything queued: nothing is written, and the general
way starts the oldest queued run in the end's transaction.

A run's end that a caller waits for (store.waiting) adds `pg_notify` to the statement
(`notified AS MATERIALIZED (SELECT pg_notify(…) FROM finished)`), so the notification
goes out with the commit, and that commit is an ordinary one: the caller is told.

When the statement writes nothing (the claim was lost, the run is no longer running, or
a run-end hook has work to do), nothing has changed and
the caller takes the general way, which knows what to do in each of those cases."""

from functools import lru_cache

from django.db import connections, transaction
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from automation.definitions import Step
from automation.definitions.steps.outcome import Outcome
from automation.models import ConcurrencyGate, Run, StepRun
from automation.store import gates, hooks, waiting
from automation.store.base import (
    CHUNK_ENTITY,
    RUN_NOT_STARTED,
    ChunkWritten,
    RunStore,
    StoreFeatures,
    run_insert,
    trace_run,
)
from automation.store.claims import Claim, Handover
from automation.store.doorbell import enqueue_chunk, enqueue_step
from automation.store.graphs import concurrency_for, graph_for, is_plain, is_sequential
from automation.store.policy import step_timeout_seconds
from automation.store.settling import RUN_UPDATE, STEP_UPDATE
from automation.store.state import StepState
from automation.store.successors import hand_over, successor_row
from entities.db import commits, prepared
from entities.db.compiled import (
    RowBuilder,
    insert_from,
    insert_select,
    update_sql,
)


class PostgresRunStore(RunStore):
    features = StoreFeatures(one_statement=True, start_in_statement=True,
                             concurrent_writes=True, chunk_finds_itself=True)

    def _alone(self) -> bool:
        """Statements here commit by themselves: outside any transaction only."""
        return not connections[self.using].in_atomic_block

    # -- starting ----------------------------------------------------------------------

    def start(self, run: Run, step_run: StepRun, first: Step) -> bool:
        """The run and its first step in one statement (atomic on its own, one round trip
        instead of four at the top level), the step only if the run was written. A run
        under a concurrency rule takes the general way (store.gates)."""
        if run.concurrency_key is not None:
            return super().start(run, step_run, first)
        ctes, params = self._start_ctes(run, step_run)
        sql = f"WITH {ctes} SELECT id FROM first_step"  # noqa: S608
        if connections[self.using].in_atomic_block:
            with connections[self.using].cursor() as cursor:
                prepared.execute(cursor, sql, params, using=self.using)
                row = cursor.fetchone()
        else:  # its own transaction (an API trigger): its values bound by the server
            row = prepared.fetch_one_alone(sql, params, using=self.using)
        if row is None:
            return False
        self._written(run, step_run, row[0])
        enqueue_step(step_run.pk, timeout=step_timeout_seconds(first), priority=run.priority)
        return True

    def start_statement(self, run: Run, step_run: StepRun, first: Step, *, source: str):
        """The start as CTEs that write only if the CTE `source` has a row (the event
        dispatch's claim, entities.outbox): `(ctes, params, started)`. The CTE
        `written_row` holds the first step run's id, none if the idempotency key was
        taken; the caller runs the statement on its own and hands that id to `started`,
        which rings for the step."""
        ctes, params = self._start_ctes(run, step_run, source=source)
        ctes += ", written_row AS (SELECT id FROM first_step)"

        def started(step_run_pk: int | None) -> None:
            if step_run_pk is None:  # the key was taken: the run exists, and was rung for
                return
            self._written(run, step_run, step_run_pk)
            enqueue_step(step_run.pk, timeout=step_timeout_seconds(first), priority=run.priority)

        return ctes, params, started

    def _start_ctes(self, run: Run, step_run: StepRun, *, source: str | None = None
                    ) -> tuple[str, tuple]:
        """`run_row AS (INSERT run … [FROM source] ON CONFLICT DO NOTHING RETURNING id),
        first_step AS (INSERT step … FROM run_row RETURNING id)`."""
        qn = connections[self.using].ops.quote_name
        trace_run(run)
        run_sql, run_params = insert_from(run, source, self.using, insert=run_insert(run))
        step_sql, step_params = insert_from(step_run, "run_row", self.using)
        # only Django's compiled SQL and quoted names go in; every value is a parameter
        ctes = (f"run_row AS ({run_sql} RETURNING {qn(Run._meta.pk.column)}), "
                f"first_step AS ({step_sql} RETURNING {qn(StepRun._meta.pk.column)})")
        return ctes, (*run_params, *step_params)

    def start_chunk(self, template: Run, entities: QuerySet, first: Step, *,
                    key_prefix: str, size: int) -> ChunkWritten:
        """A batch's chunk in one statement: the chunk's entities (the first `size` past
        the cursor, by key) selected once, the runs `INSERT … SELECT` over them `ON
        CONFLICT DO NOTHING` (their keys are unique: a chunk done again writes nothing),
        their first steps `INSERT … SELECT` from the runs that statement wrote, and the
        chunk's extent for the batch's cursor. Rings for the steps after the commit:
        chunk doorbells (store.doorbell), in one broker round trip."""
        qn = connections[self.using].ops.quote_name
        chunk_sql, chunk_params = self._chunk_entities(entities, size)
        # whether an entity is left after the chunk (ChunkWritten.last_one: the chunk's
        # commit then ends the fan-out): one probe of the index past the chunk's last key
        entity = qn(CHUNK_ENTITY)
        last_key = f"(SELECT {entity} FROM chunk ORDER BY {entity} DESC LIMIT 1)"  # noqa: S608
        after_sql, after_params = entities.filter(
            pk__gt=RawSQL(last_key, ())  # noqa: S611 - no value in it
        ).values("pk")[:1].query.get_compiler(using=self.using).as_sql()
        run_sql, run_params = self._chunk_runs(template, "chunk", (), key_prefix)
        step_sql, step_params = insert_select(
            self._chunk_step(template, first), "run_row", (), self.using,
            expressions={"run_id": (f"run_row.{qn(Run._meta.pk.column)}", ())})
        # only Django's compiled SQL and quoted names go in; every value is a parameter
        sql = (f"WITH chunk AS MATERIALIZED ({chunk_sql}), "  # noqa: S608
               f"run_row AS ({run_sql} RETURNING {qn(Run._meta.pk.column)}), "
               f"step_row AS ({step_sql} RETURNING {qn(StepRun._meta.pk.column)}) "
               f"SELECT (SELECT count(*) FROM chunk), "
               f"{last_key}, "
               f"(SELECT count(*) FROM run_row), "
               f"ARRAY(SELECT {qn(StepRun._meta.pk.column)} FROM step_row), "
               f"NOT EXISTS ({after_sql})")
        with transaction.atomic(using=self.using, savepoint=False):
            with connections[self.using].cursor() as cursor:
                cursor.execute(sql, (*chunk_params, *run_params, *step_params, *after_params))
                count, last, created, step_ids, last_one = cursor.fetchone()
            if step_ids:  # none: the chunk was written before, or no entity was left
                enqueue_chunk(step_ids, timeout=step_timeout_seconds(first),
                              priority=template.priority)
        return ChunkWritten(created, count, last, last_one)

    RANDOM_SPAN_ID = "substr(md5(random()::text), 1, 16)"

    # A chunk's run id, time-ordered: the UUID version 7 layout (the milliseconds since
    # 1970 in the first 48 bits, then the version, and 74 random bits of a version 4
    # UUID). A chunk's runs then land at the right end of the run's primary key index
    # and of the step runs' (run, step, scope) index, and each step run's foreign key
    # check finds its run there, instead of on a random page of each for every run: the
    # chunk's database CPU fell by about a tenth (docs/performance.md, "Batch fan-out:
    # the chunk finds itself"). Unique as a version 4 UUID is, with 48 bits fewer of
    # chance within the same millisecond.
    RUN_ID = ("encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) PLACING "
              "substring(int8send(floor(date_part('epoch', clock_timestamp()) * 1000)::bigint) "
              "FROM 3) FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid")

    def _chunk_keys(self, entity: str, key_prefix: str) -> dict:
        return {"id": (self.RUN_ID, ()), "entity_id": (entity, ()),
                "idempotency_key": (f"%s || {entity}::text", (key_prefix,))}

    def _written(self, run: Run, step_run: StepRun, step_run_pk: int) -> None:
        self._saved(run)
        self._saved(step_run, pk=step_run_pk)

    def _saved(self, obj, *, pk=None) -> None:
        """`obj` as the ORM leaves an instance it has inserted (this statement did)."""
        obj._state.adding, obj._state.db = False, self.using
        if pk is not None:
            obj.pk = pk

    # -- claiming ----------------------------------------------------------------------

    def _take(self, step_run_id: int, claim: tuple[str, tuple], *,
              durable: bool) -> StepRun | None:
        """Run `claim` (the UPDATE of at most one step run) and return the row as
        `StepRun.objects.select_related("run__process")` loads it, in one statement,
        committed without the flush unless `durable`."""
        if not self._alone():
            return super()._take(step_run_id, claim, durable=durable)
        claim_sql, claim_params = claim
        builder, select_from = _claimed_select(self.using)
        # The run becomes running in the same statement (RunStore._run_started); the
        # SELECT still sees the run as it was before, so the copy is brought up to date.
        qn = connections[self.using].ops.quote_name
        now = timezone.now()
        # quoted names and placeholders only; every value is a parameter
        started = (f"started AS (UPDATE {qn(Run._meta.db_table)} SET {qn('status')} = %s, "  # noqa: S608
                   f"{qn('started_at')} = COALESCE({qn('started_at')}, %s) "
                   f"WHERE {qn('id')} = (SELECT {qn('run_id')} FROM claimed) "
                   f"AND {qn('status')} IN (%s, %s))")
        started_params = (Run.Status.RUNNING, now, *RUN_NOT_STARTED)
        sql = f"WITH claimed AS ({claim_sql} RETURNING *), {started} {select_from}"  # noqa: S608
        params = (*claim_params, *started_params)
        if durable or not commits.relaxed(self.using):  # one statement: bound on the server
            row = prepared.fetch_one_alone(sql, params, using=self.using)
        else:  # SET LOCAL and the statement: one query, its values bound here
            with connections[self.using].cursor() as cursor:
                commits.execute_alone(cursor, sql, params, using=self.using, durable=False,
                                      prepare=True)
                row = cursor.fetchone()
        if row is None:
            return None
        step_run = builder.build(row)
        if step_run.run.status in RUN_NOT_STARTED:
            step_run.run.status = Run.Status.RUNNING
            step_run.run.started_at = step_run.run.started_at or now
        return step_run

    def _take_group(self, step_run_ids: list[int], *, lease_seconds: int,
                    durable: bool) -> list[StepRun]:
        """The group's claim, its runs' `running` and the rows with their runs and
        processes in one statement (as _take for one), committed without the flush
        unless `durable`."""
        if not self._alone():
            return super()._take_group(step_run_ids, lease_seconds=lease_seconds,
                                       durable=durable)
        rows, values, now = self._group_values(step_run_ids, lease_seconds)
        claim_sql, claim_params = update_sql(rows, values, self.using)
        builder, select_from = _claimed_select(self.using)
        qn = connections[self.using].ops.quote_name
        # quoted names and placeholders only; every value is a parameter
        started = (f"started AS (UPDATE {qn(Run._meta.db_table)} SET {qn('status')} = %s, "  # noqa: S608
                   f"{qn('started_at')} = COALESCE({qn('started_at')}, %s) "
                   f"WHERE {qn('id')} IN (SELECT {qn('run_id')} FROM claimed) "
                   f"AND {qn('status')} IN (%s, %s))")
        sql = f"WITH claimed AS ({claim_sql} RETURNING *), {started} {select_from}"  # noqa: S608
        with connections[self.using].cursor() as cursor:
            commits.execute_alone(cursor, sql, (*claim_params, Run.Status.RUNNING, now,
                                                *RUN_NOT_STARTED),
                                  using=self.using, durable=durable)
            step_runs = [builder.build(row) for row in cursor.fetchall()]
        for step_run in step_runs:  # the SELECT saw the runs as they were before
            if step_run.run.status in RUN_NOT_STARTED:
                step_run.run.status = Run.Status.RUNNING
                step_run.run.started_at = step_run.run.started_at or now
        return step_runs

    def must_flush_before(self, claim: Claim, *, cheap: bool) -> bool:
        """A claim here skipped the disk flush (entities.db.commits). It changes nothing
        anyone outside has seen; a step that may call out makes it durable first. A step
        claimed in its predecessor's record (a continuation) was written by a flushed
        commit already."""
        return (not cheap and not claim.durable and self._alone()
                and commits.relaxed(self.using))

    # -- recording ---------------------------------------------------------------------

    def record(self, claim: Claim, outcome: Outcome, *, duration_ms: int,
               handover: Handover | None = None) -> None:
        if not self._record_in_one(claim, outcome, duration_ms=duration_ms, handover=handover):
            super().record(claim, outcome, duration_ms=duration_ms, handover=handover)

    def _record_in_one(self, claim: Claim, outcome: Outcome, *, duration_ms: int,
                       handover: Handover | None) -> bool:
        """A step of a run with no join and no loop that completes into one successor, or
        ends a sequential run. False when nothing was written: the general way records it."""
        step_run = claim.step_run
        if not (outcome.kind == "completed" and self._alone()
                and step_run.status == StepRun.Status.RUNNING and step_run.claim is not None
                and StepRun.run.is_cached(step_run) and is_plain(step_run.run.version_id)):
            return False
        run = step_run.run
        graph = graph_for(run.version_id)
        step = graph.steps[step_run.step_id]
        targets = step.next if outcome.targets is None else outcome.targets
        ends_run = not targets and is_sequential(run.version_id)
        if len(targets) > 1 or (not targets and not ends_run):
            return False
        gate = self._gate_of(run) if ends_run else None
        now = timezone.now()
        state = StepState.from_json(step_run.state).merged(outcome.state)
        state.terminal = not targets  # the branch (here: the run) ends
        recorded = {"status": StepRun.Status.COMPLETED, "output": outcome.output, "error": None,
                    "logs": [*step_run.logs, *outcome.logs], "state": state.to_json(),
                    "finished_at": now, "duration_ms": duration_ms}
        follower = successor_row(run, graph.steps[targets[0]], step_run, outcome.output,
                                 scope=step_run.scope, handover=handover) if targets else None
        waited = ends_run and waiting.awaited(run)
        notify = waited and waiting.mode() == "postgresql"
        written, follower_pk = self._execute(step_run, recorded, follower, ends_run=ends_run,
                                             now=now, notify=notify, gate=gate)
        if not written:
            return False
        for name, value in recorded.items():
            setattr(step_run, name, value)
        if follower is not None:
            self._saved(follower, pk=follower_pk)
            hand_over(run, graph, step_run, follower, handover=handover,
                      seen_steps=claim.seen_steps)
        else:
            run.status, run.result, run.finished_at = Run.Status.COMPLETED, outcome.output, now
            if waited and not notify:
                waiting.announce(run)  # Redis, after this (committed) statement
        return True

    @staticmethod
    def _gate_of(run: Run) -> tuple[int, str] | None:
        """(process, gate name) whose lock a start of the run's concurrency key takes
        first (store.gates.first_gate); None for a run under no concurrency rule."""
        rule = concurrency_for(run.version_id) if run.concurrency_key is not None else None
        return None if rule is None else (run.process_id, gates.first_gate(run.concurrency_key,
                                                                            rule))

    def _execute(self, step_run: StepRun, recorded: dict, follower: StepRun | None, *,
                 ends_run: bool, now, notify: bool = False,
                 gate: tuple[int, str] | None = None) -> tuple[bool, int | None]:
        record_sql, record_params = STEP_UPDATE.sql_params(
            {"pk": step_run.pk, "claim": step_run.claim, "status": StepRun.Status.RUNNING},
            recorded, self.using)
        params: list = [step_run.run_id]
        idle_sql, idle_params = (self._hooks_idle("workflow.completed", step_run.run)
                                 if ends_run else ("", []))
        if gate is not None:
            params += list(gate)
        params += [*record_params, Run.Status.RUNNING, *idle_params]
        if follower is not None:
            tail_sql, tail_params = insert_from(follower, "recorded", self.using)
            params += tail_params
        else:
            tail_sql, tail_params = RUN_UPDATE.sql_params(
                {"pk": step_run.run_id}, {"status": Run.Status.COMPLETED,
                                          "result": recorded["output"], "finished_at": now},
                self.using)
            params += tail_params
            if notify:
                params.append(waiting.CHANNEL)
        sql = _record_statement(self.using, record_sql, idle_sql, gate is not None,
                                follower is not None, tail_sql, notify)
        # durable (an ordinary commit): the step's output and a run's end are readable at
        # once, and a caller told of this end must not be told of a commit a crash could
        # forget
        count, follower_pk = prepared.fetch_one_alone(sql, params, using=self.using)[:2]
        return bool(count), follower_pk

    def _hooks_idle(self, event: str, run: Run) -> tuple[str, list]:
        """` AND NOT EXISTS (…)` for each run-end hook's rows that need work, unless the
        hook rules itself out from the run alone (store.hooks): a run whose end some hook
        must act on is recorded the general way, where the hooks run."""
        sql, params = "", []
        for hook in hooks.run_end_hooks():
            if hook.idle_for is not None and hook.idle_for(run):
                continue
            if hook.idle_when is None:
                return " AND FALSE", []  # a hook that cannot say: always the general way
            rows_sql, rows_params = _compiled_rows(hook, event, self.using)
            sql += f" AND NOT EXISTS ({rows_sql})"
            params += rows_params
        return sql, params


@lru_cache(maxsize=64)
def _compiled_rows(hook: hooks.RunEndHook, event: str, using: str) -> tuple[str, list]:
    """A hook's rows-that-need-work query as SQL, compiled once per event and database."""
    rows = hook.idle_when(event).values("pk")
    sql, params = rows.query.get_compiler(using=using).as_sql()
    return sql, list(params)


@lru_cache(maxsize=64)
def _record_statement(using: str, record_sql: str, idle_sql: str, gated: bool,
                      follows: bool, tail_sql: str, notify: bool) -> str:
    """The text of PostgresRunStore._execute's statement, from its compiled parts: the
    same for every step of one shape, so put together once per shape (its parameters,
    in this order: the run's id, the gate's process and name when `gated`, the record's,
    `running` and `idle_sql`'s, then the follower's INSERT or the run's finishing UPDATE
    (`tail_sql`), and the channel when `notify`)."""
    qn = connections[using].ops.quote_name
    run_table, step_table = qn(Run._meta.db_table), qn(StepRun._meta.db_table)
    parts = [f"run_row AS MATERIALIZED (SELECT {qn('status')} FROM {run_table} "  # noqa: S608
             f"WHERE {qn('id')} = %s FOR UPDATE)"]
    guard = "EXISTS (SELECT 1 FROM run_row WHERE status = %s)"
    guard += idle_sql  # the hooks' conditions (PostgresRunStore._hooks_idle)
    if gated:
        # A gated run's end: the lock of the gate every start of its key takes first,
        # after the run's (the order of the general way), and whether a run may be
        # queued behind it. Read under the lock, so from the row's newest version even
        # when this statement waited for a start that queued a run and committed (a
        # NOT EXISTS over queued runs here would read the statement's older snapshot
        # and miss it). Anything queued: nothing is written; the general way starts it.
        gate_table = qn(ConcurrencyGate._meta.db_table)
        parts.append(f"gate_row AS MATERIALIZED (SELECT {qn('queued')} "  # noqa: S608
                     f"FROM {gate_table} WHERE {qn('process_id')} = %s "
                     f"AND {qn('key')} = %s AND EXISTS (SELECT 1 FROM run_row) "
                     f"FOR UPDATE OF {gate_table})")
        guard += " AND EXISTS (SELECT 1 FROM gate_row WHERE NOT queued)"
    # compiled SQL, quoted names and placeholders only; every value is a parameter
    parts.append(f"recorded AS ({record_sql} AND {guard} "  # noqa: S608
                 f"RETURNING {step_table}.{qn('id')})")
    select = "SELECT (SELECT count(*) FROM recorded), "
    if follows:
        parts.append(f"follower AS ({tail_sql} RETURNING {qn('id')})")
        select += "(SELECT id FROM follower)"
    else:
        parts.append(f"finished AS ({tail_sql} "  # noqa: S608
                     f"AND EXISTS (SELECT 1 FROM recorded) RETURNING {qn('id')})")
        select += "NULL"
        if notify:  # a caller waits for this run: NOTIFY with the commit (store.waiting)
            parts.append(waiting.NOTIFY_CTE)
            select += ", (SELECT count(*) FROM notified)"
    return f"WITH {', '.join(parts)} {select}"  # noqa: S608 - compiled SQL only


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
