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
from django.db.models import Exists, F, Q, QuerySet, Value
from django.db.models.constants import OnConflict
from django.db.models.functions import Coalesce
from django.utils import timezone

import integrations.tracing as tracing
from automation.definitions import Step
from automation.definitions.steps.outcome import Outcome
from automation.exceptions import RunStateError
from automation.models import Run, StepRun
from automation.store import (
    children,
    gates,
    grouped,
    hooks,
    pruning,
    recording,
    settling,
    subprocesses,
    waiting,
)
from automation.store.claims import Claim, Handover
from automation.store.doorbell import enqueue_chunk, enqueue_many, enqueue_step, queue_shares
from automation.store.graphs import concurrency_for
from automation.store.pauses import HELD_UNTIL, paused_rows
from automation.store.policy import step_timeout_seconds
from entities.db import driver
from entities.db.compiled import (
    CompiledInsert,
    CompiledLookup,
    CompiledStatement,
    insert_select,
    preparation,
    update_sql,
)

# A claimed step run with its run and process, as the worker needs them; every claim
# reads it, so its SQL is compiled once (a third of a claim's CPU on SQLite was Django
# compiling this SELECT).
_CLAIMED = CompiledLookup(lambda pk: StepRun.objects.select_related("run__process").filter(pk=pk),
                          marker=-1)
# A run in one of these becomes `running` when one of its steps is claimed.
RUN_NOT_STARTED = (Run.Status.PENDING, Run.Status.WAITING)


def _due(now) -> Q:
    """A step run a claim may take now: pending, and not put off to later."""
    return Q(status=StepRun.Status.PENDING) & (Q(not_before__isnull=True) | Q(not_before__lte=now))


def _claim_values(claim: uuid.UUID, now, lease_until) -> dict:
    return {"status": StepRun.Status.RUNNING, "claim": claim, "attempt": F("attempt") + 1,
            "started_at": now, "lease_expires_at": lease_until}


def _saved(model, name: str, value, connection):
    return preparation(model._meta.get_field(name), connection.alias).save(value, connection)


def _looked_up(model, name: str, value, connection):
    field = model._meta.pk if name == "pk" else model._meta.get_field(name)
    return preparation(field, connection.alias).lookup(value, connection)


def _claim_params(connection, claim: uuid.UUID, now, lease_until) -> list:
    """The SET part of a claim, in the order of _claim_values."""
    return [_saved(StepRun, "status", StepRun.Status.RUNNING, connection),
            _saved(StepRun, "claim", claim, connection), 1,
            _saved(StepRun, "started_at", now, connection),
            _saved(StepRun, "lease_expires_at", lease_until, connection)]


# A claim's conditional UPDATE: one of a step that is due, one of a step whose holder let
# its lease run out. The same statement every claim, so Django compiles each once per
# database (entities.db.compiled.CompiledStatement): building and compiling the queryset
# each time was a third of a claim's Python time.
_CLAIM_DUE = CompiledStatement(
    lambda using, pk, claim, now, lease_until: update_sql(
        StepRun.objects.filter(_due(now), pk=pk),
        _claim_values(claim, now, lease_until), using),
    lambda connection, pk, claim, now, lease_until: [
        *_claim_params(connection, claim, now, lease_until),
        _looked_up(StepRun, "status", StepRun.Status.PENDING, connection),
        _looked_up(StepRun, "not_before", now, connection),
        _looked_up(StepRun, "pk", pk, connection)])
_CLAIM_EXPIRED = CompiledStatement(
    lambda using, pk, claim, now, lease_until: update_sql(
        StepRun.objects.filter(pk=pk, status=StepRun.Status.RUNNING, lease_expires_at__lt=now),
        {**_claim_values(claim, now, lease_until),
         "key_attempt": Coalesce(F("key_attempt"), F("attempt"))}, using),
    lambda connection, pk, claim, now, lease_until: [
        *_claim_params(connection, claim, now, lease_until),
        _looked_up(StepRun, "lease_expires_at", now, connection),
        _looked_up(StepRun, "pk", pk, connection),
        _looked_up(StepRun, "status", StepRun.Status.RUNNING, connection)])
# A run's first claim makes it running (RunStore._run_started)
_RUN_STARTED = CompiledStatement(
    lambda using, pk, now: update_sql(
        Run.objects.filter(pk=pk, status__in=RUN_NOT_STARTED),
        {"status": Run.Status.RUNNING, "started_at": Coalesce(F("started_at"), Value(now))},
        using),
    lambda connection, pk, now: [
        _saved(Run, "status", Run.Status.RUNNING, connection),
        _saved(Run, "started_at", now, connection),
        _looked_up(Run, "pk", pk, connection),
        *(_looked_up(Run, "status", status, connection) for status in RUN_NOT_STARTED)])

# The column a batch chunk's entity ids are selected as (start_chunk).
CHUNK_ENTITY = "chunk_entity"


@dataclass(frozen=True)
class ChunkWritten:
    """What a batch chunk's statements did (start_chunk): `created` runs were new, of
    the `count` entities of the chunk, whose last key is `last` (None: no entity was
    left past the cursor); `last_one`: the statements saw that no entity is left after
    the chunk (False: not known, or some are)."""
    created: int
    count: int
    last: uuid.UUID | None
    last_one: bool = False


def _entity_key(value) -> uuid.UUID | None:
    """An entity key as the database returned it (SQLite: 32 hex digits), as a UUID."""
    return None if value is None else Run._meta.get_field("entity").target_field.to_python(value)


@dataclass(frozen=True)
class StoreFeatures:
    # A claim and the common records are one statement each, committed on their own.
    one_statement: bool = False
    # A run's start can be joined to another statement (the event dispatch's claim).
    start_in_statement: bool = False
    # Two connections may write at once, so one transaction's statements can run while
    # another's commit waits for the disk (a batch's chunks: services.batches). SQLite
    # has one write lock: the second would only wait for the first.
    concurrent_writes: bool = False
    # A batch chunk's one statement finds the chunk itself (its first entities past the
    # cursor). Elsewhere (SQLite) a chunk is three statements, each of which would select
    # the chunk again, so it is bounded by its last key first (services.batches).
    chunk_finds_itself: bool = False


_RUN_FIELDS = [f for f in Run._meta.concrete_fields if not f.generated]  # its pk is a UUID
_RUN_INSERTS = {key: CompiledInsert(Run, fields=_RUN_FIELDS, on_conflict=conflict)
                for key, conflict in ((True, OnConflict.IGNORE), (False, None))}
_STEP_INSERT = CompiledInsert(StepRun)


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
        if run.concurrency_key is not None:
            return self._start_gated(run, step_run, first)
        # Both INSERTs are compiled before the transaction begins: on SQLite it holds the
        # database's one write lock, which every other writer waits for (an API trigger
        # compiled them inside it, docs/performance.md).
        rows = self._run_and_step_rows(run, step_run)
        if driver.owns_transactions(self.using) and not queue_shares(self.using):
            # On SQLite outside any transaction (an API trigger): the two INSERTs in one
            # transaction of the driver's own, then the doorbell, which goes to a queue
            # of its own, sent after the commit as Django's on-commit would send it.
            with driver.transaction(using=self.using):
                written = self._write_run_and_step(run, step_run, rows)
            if written:  # outside any transaction: rung now
                enqueue_step(step_run.pk, timeout=step_timeout_seconds(first),
                             priority=run.priority)
            return written
        with transaction.atomic(using=self.using, savepoint=False):
            if not self._write_run_and_step(run, step_run, rows):
                return False
            enqueue_step(step_run.pk, timeout=step_timeout_seconds(first), priority=run.priority)
        return True

    def _start_gated(self, run: Run, step_run: StepRun, first: Step) -> bool:
        """A start under the process's concurrency rule (store.gates): it starts, waits
        its turn (pending, with the reason), is cancelled, or cancels the oldest running
        runs of its key, as the rule's onLimit says."""
        rule = concurrency_for(run.version_id)
        with transaction.atomic(using=self.using, savepoint=False):
            gates.lock(run.process_id, run.concurrency_key, rule)
            over = gates.full(run.process_id, run.concurrency_key, rule)
            cancel = []
            if over is not None and rule.on_limit == "cancel-running":
                _, holders, limit = over
                cancel = gates.victims(holders, limit)
                if holders.count() - len(cancel) < limit:
                    over = None  # a locked holder may keep its slot: then queue instead
            if over is None:
                ringing = True
            elif rule.on_limit == "cancel-new":
                run.status, run.finished_at = Run.Status.CANCELLED, timezone.now()
                run.error = {"message": f"Cancelled: concurrency {over[0]} (onLimit cancel-new).",
                             "step": None,
                             "code": "concurrency_limit"}
                step_run.status, ringing = StepRun.Status.CANCELLED, False
            else:  # queue: pending with its reason; the step is not claimable yet
                run.pending_reason = f"Waiting for a concurrency slot: {over[0]}."
                step_run.status, ringing = StepRun.Status.WAITING, False
            if not self._insert_run_and_step(run, step_run):
                return False
            if run.pending_reason is not None:  # a run's end must look for it
                gates.mark_queued(run.process_id, run.concurrency_key, rule)
            for victim in cancel:
                self._cancel_locked(victim, code="concurrency_cancelled",
                                    message="Cancelled: a newer run of the same concurrency "
                                            "key started (onLimit cancel-running).")
            if ringing:
                enqueue_step(step_run.pk, timeout=step_timeout_seconds(first),
                             priority=run.priority)
        return True

    def _insert_run_and_step(self, run: Run, step_run: StepRun) -> bool:
        return self._write_run_and_step(run, step_run, self._run_and_step_rows(run, step_run))

    def _run_and_step_rows(self, run: Run, step_run: StepRun) -> tuple[tuple, tuple]:
        """The INSERTs of a new run and of its first step run, `(sql, params)` each, as
        save() would write them (the run's skips a taken idempotency key, run_insert)."""
        trace_run(run)
        return (run_insert(run).sql_params(run, self.using),
                _STEP_INSERT.sql_params(step_run, self.using))

    def _write_run_and_step(self, run: Run, step_run: StepRun, rows: tuple[tuple, tuple]
                            ) -> bool:
        """Run `_run_and_step_rows`' INSERTs (in the caller's transaction); False, with
        nothing written, when the run's idempotency key is taken. On SQLite they go past
        Django's cursor (entities.db.driver): a save that starts a run writes them."""
        (run_sql, run_params), (step_sql, step_params) = rows
        connection = connections[self.using]
        if connection.vendor == "sqlite":
            if not driver.execute(run_sql, run_params, using=self.using).rowcount:
                return False
            step_run_pk = driver.execute(step_sql, step_params, using=self.using).lastrowid
        else:
            with connection.cursor() as cursor:
                cursor.execute(run_sql, run_params)
                if not cursor.rowcount:
                    return False
                if connection.features.can_return_columns_from_insert:
                    pk = connection.ops.quote_name(StepRun._meta.pk.column)
                    cursor.execute(f"{step_sql} RETURNING {pk}", step_params)
                    step_run_pk = cursor.fetchone()[0]
                else:
                    cursor.execute(step_sql, step_params)
                    step_run_pk = connection.ops.last_insert_id(
                        cursor, StepRun._meta.db_table, StepRun._meta.pk.column)
        for row in (run, step_run):  # as save() leaves an instance it inserted
            row._state.adding, row._state.db = False, self.using
        step_run.pk = step_run_pk
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
                copy.run, copy.priority = run, run.priority
            StepRun.objects.using(self.using).bulk_create(copies)  # in their old order
            step_run.priority = run.priority
            step_run.save(force_insert=True, using=self.using)
            enqueue_step(step_run.pk, timeout=step_timeout_seconds(first), priority=run.priority)
            for other, step in also:  # more steps that start again (a retry's stopped branches)
                other.run, other.priority = run, run.priority
                other.save(force_insert=True, using=self.using)
                enqueue_step(other.pk, timeout=step_timeout_seconds(step), priority=run.priority)
        return True

    def start_statement(self, run: Run, step_run: StepRun, first: Step, *, source: str):
        """The start as CTEs of another statement, where the backend can (None here)."""
        return None

    def start_chunk(self, template: Run, entities: QuerySet, first: Step, *,
                    key_prefix: str, size: int) -> ChunkWritten:
        """A batch's chunk, set-based: one run like `template` for each of the first
        `size` entities of `entities` in key order (a queryset of entity ids past the
        batch's cursor, never loaded here), each with its first step run, as INSERT …
        SELECT statements over the entities, so a chunk costs the same few statements and
        memory whatever its size. The chunk's statements find the chunk themselves (its
        entities and its last key), so nothing reads the entities before them. Rings for
        the new steps with chunk doorbells (store.doorbell.enqueue_chunk) in one broker
        round trip.

        A run's idempotency key is `key_prefix` + its entity id (`batch:<batch>:<entity>`,
        unique): a chunk done again (a fan-out task delivered twice, or re-done after its
        worker died) writes no run, and so no step and no doorbell. Here (SQLite) the runs
        are `INSERT OR IGNORE`d, then the steps written for the chunk's runs that have
        none, which in the same transaction are exactly the runs just written."""
        connection = connections[self.using]
        qn = connection.ops.quote_name
        chunk_sql, chunk_params = self._chunk_entities(entities, size)
        run_sql, run_params = self._chunk_runs(template, f"({chunk_sql}) AS chunk",
                                               chunk_params, key_prefix)
        run_table, step_table = qn(Run._meta.db_table), qn(StepRun._meta.db_table)
        run_pk, batch_column = qn(Run._meta.pk.column), qn(Run._meta.get_field("batch").column)
        entity_column = qn(Run._meta.get_field("entity").column)
        step_run_column = qn(StepRun._meta.get_field("run").column)
        batch_id = Run._meta.get_field("batch").get_db_prep_save(template.batch_id, connection)
        # only quoted names and Django's compiled SQL go in; every value is a parameter
        new_runs = (f"{run_table} AS r WHERE r.{batch_column} = %s "  # noqa: S608
                    f"AND r.{entity_column} IN ({chunk_sql}) AND NOT EXISTS "
                    f"(SELECT 1 FROM {step_table} AS s WHERE s.{step_run_column} = r.{run_pk})")
        step_sql, step_params = insert_select(
            self._chunk_step(template, first), new_runs, (batch_id, *chunk_params), self.using,
            expressions={"run_id": (f"r.{run_pk}", ())})
        step_pk, entity = qn(StepRun._meta.pk.column), qn(CHUNK_ENTITY)
        with transaction.atomic(using=self.using, savepoint=False):
            with connection.cursor() as cursor:
                cursor.execute(run_sql, run_params)
                created = cursor.rowcount
                cursor.execute(f"{step_sql} RETURNING {step_pk}", step_params)
                step_ids = [row[0] for row in cursor.fetchall()]
                # the chunk's extent, for the batch's cursor: read in the same transaction
                # (SQLite's write lock is held), so it is the chunk the INSERTs wrote
                cursor.execute(f"SELECT count(*), max({entity}) FROM ({chunk_sql}) AS chunk",  # noqa: S608
                               chunk_params)
                count, last = cursor.fetchone()
            if step_ids:  # none: the chunk was written before, or no entity was left
                enqueue_chunk(step_ids, timeout=step_timeout_seconds(first),
                              priority=template.priority)
        return ChunkWritten(created, count, _entity_key(last))

    def _chunk_runs(self, template: Run, source: str, source_params: tuple,
                    key_prefix: str) -> tuple[str, tuple]:
        """The INSERT … SELECT of a chunk's runs from `source`, whose column CHUNK_ENTITY
        is the entity (both backends' start_chunk). Each run gets a span of its own while
        tracing is on."""
        trace_run(template)
        qn = connections[self.using].ops.quote_name
        return insert_select(
            template, source, source_params, self.using,
            expressions=self._chunk_run_columns(f"chunk.{qn(CHUNK_ENTITY)}", key_prefix,
                                              template),
            insert=run_insert(template))

    def _chunk_entities(self, entities: QuerySet, size: int) -> tuple[str, tuple]:
        """The chunk's entity ids as a SELECT of one column, CHUNK_ENTITY: the first
        `size` of `entities` by key."""
        sql, params = entities.annotate(**{CHUNK_ENTITY: F("pk")}).values_list(
            CHUNK_ENTITY).order_by("pk")[:size].query.get_compiler(using=self.using).as_sql()
        return sql, tuple(params)

    # SQL for 16 random hex digits: a span id (SQLite; PostgreSQL overrides it)
    RANDOM_SPAN_ID = "lower(hex(randomblob(8)))"

    def _chunk_run_columns(self, entity: str, key_prefix: str, template: Run) -> dict:
        """A chunk's run columns computed per row: the entity's, its key, its id and,
        while tracing is on, its own span in the trace of the fan-out (trace_run gave the
        template the trace, each row gets a span id of its own)."""
        columns = self._chunk_keys(entity, key_prefix)
        if template.traceparent:  # 00-<trace id>-<span id>-<flags>
            columns["traceparent"] = (f"%s || {self.RANDOM_SPAN_ID} || %s",
                                      (template.traceparent[:36], template.traceparent[52:]))
        return columns

    def _chunk_keys(self, entity: str, key_prefix: str) -> dict:
        """The id and idempotency key of a chunk's run (SQLite: a UUID is 32 hex digits;
        the key spells the entity id as str(uuid) does)."""
        dashed = "||'-'||".join(f"substr({entity}, {start}, {length})" for start, length in
                                ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12)))
        return {"id": ("lower(hex(randomblob(16)))", ()), "entity_id": (entity, ()),
                "idempotency_key": (f"%s || {dashed}", (key_prefix,))}

    @staticmethod
    def _chunk_step(template: Run, first: Step) -> StepRun:
        """A chunk's first step run, as every run of the chunk gets it."""
        return StepRun(run_id=template.pk, step_id=first.id, step_type=first.type, input={},
                       priority=template.priority)

    # -- claiming ----------------------------------------------------------------------

    def claim(self, step_run_id: int, *, lease_seconds: int,
              durable: bool = False) -> Claim | None:
        """Take the step if it is due, or if the worker that held it let its lease expire.

        One conditional UPDATE decides, so two deliveries of one task cannot both win.
        `durable`: the claim's own commit waits for the disk where commits may skip it
        (store.postgresql), so a step that may call out needs no flush of its own
        after it (must_flush_before).

        The claim and its run's `running` are one transaction here: on SQLite each
        statement on its own is a commit of its own, and each commit takes the one
        write lock the saving processes and the other workers wait on
        (docs/performance.md, "First step on SQLite"). A backend whose claim is one
        statement (features.one_statement) needs no transaction around it.
        """
        if self.features.one_statement:
            return self._claim(step_run_id, lease_seconds=lease_seconds, durable=durable)
        with transaction.atomic(using=self.using, savepoint=False):
            return self._claim(step_run_id, lease_seconds=lease_seconds, durable=durable)

    def _claim(self, step_run_id: int, *, lease_seconds: int, durable: bool) -> Claim | None:
        now = timezone.now()
        claimed = (step_run_id, uuid.uuid4(), now, now + timedelta(seconds=lease_seconds))
        step_run = self._take(step_run_id, _CLAIM_DUE.sql_params(self.using, *claimed),
                              durable=durable)
        if step_run is not None:
            self._run_started(step_run)
            return Claim(step_run, durable=durable)
        # The holder's lease ran out. The attempt it never reported is remembered by this
        # very UPDATE (the right-hand side sees the old row): a worker killed again right
        # after it cannot make the next attempt send a key the outside has not seen.
        step_run = self._take(step_run_id, _CLAIM_EXPIRED.sql_params(self.using, *claimed),
                              durable=durable)
        if step_run is None:
            return None
        self._run_started(step_run)
        return Claim(step_run, reclaimed=True, durable=durable)

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
        sql, params = _RUN_STARTED.sql_params(self.using, run.pk, now)
        with connections[self.using].cursor() as cursor:
            cursor.execute(sql, params)
        run.status = Run.Status.RUNNING
        run.started_at = run.started_at or now

    def _take(self, step_run_id: int, claim: tuple[str, tuple], *,
              durable: bool) -> StepRun | None:
        """Run `claim` (the claim's UPDATE of at most one step run, as _CLAIM_DUE and
        _CLAIM_EXPIRED compile it) and return the row as it now is, with its run and
        process; None when it wrote nothing."""
        sql, params = claim
        with connections[self.using].cursor() as cursor:
            cursor.execute(sql, params)
            if not cursor.rowcount:
                return None
        return _CLAIMED.first(step_run_id, using=self.using)

    def claim_group(self, step_run_ids: list[int], *, lease_seconds: int,
                    durable: bool = False) -> list[Claim]:
        """Claim those of the steps that are due, together (a chunk doorbell's steps,
        engine.chunks): one conditional UPDATE decides for all of them, as `claim` does
        for one, and their runs become `running`. Returned in the order asked; a step
        not among them (taken, finished, not due, or a lease to take over) is left to
        `claim`, as its own doorbell would have it. Each is a claim of its own, with its
        lease: a worker that dies leaves every one of them to the sweeper."""
        if not step_run_ids:
            return []
        if self.features.one_statement:
            step_runs = self._take_group(step_run_ids, lease_seconds=lease_seconds,
                                         durable=durable)
        else:
            with transaction.atomic(using=self.using, savepoint=False):
                step_runs = self._take_group(step_run_ids, lease_seconds=lease_seconds,
                                             durable=durable)
        order = {pk: i for i, pk in enumerate(step_run_ids)}
        step_runs.sort(key=lambda step_run: order[step_run.pk])
        return [Claim(step_run, durable=durable) for step_run in step_runs]

    def _group_values(self, step_run_ids: list[int], lease_seconds: int
                      ) -> tuple[QuerySet, dict, object]:
        """The due rows among `step_run_ids` and what their claim writes (one claim
        token for the group: each row is still written only while it is the group's)."""
        now = timezone.now()
        values = _claim_values(uuid.uuid4(), now, now + timedelta(seconds=lease_seconds))
        return StepRun.objects.filter(_due(now), pk__in=step_run_ids), values, now

    def _take_group(self, step_run_ids: list[int], *, lease_seconds: int,
                    durable: bool) -> list[StepRun]:
        rows, values, now = self._group_values(step_run_ids, lease_seconds)
        if not rows.update(**values):
            return []
        step_runs = list(StepRun.objects.select_related("run__process").filter(
            pk__in=step_run_ids, claim=values["claim"], status=StepRun.Status.RUNNING))
        starting = {s.run_id for s in step_runs if s.run.status in RUN_NOT_STARTED}
        if starting:  # as _run_started does for one claim, in one UPDATE
            Run.objects.filter(pk__in=starting, status__in=RUN_NOT_STARTED).update(
                status=Run.Status.RUNNING, started_at=Coalesce(F("started_at"), Value(now)))
            for step_run in step_runs:
                if step_run.run_id in starting:
                    step_run.run.status = Run.Status.RUNNING
                    step_run.run.started_at = step_run.run.started_at or now
        return step_runs

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
        """Give back a claim taken to continue a run in its worker; the caller rings for
        the step."""
        step_run = claim.step_run
        return bool(StepRun.objects.filter(
            pk=step_run.pk, claim=step_run.claim, status=StepRun.Status.RUNNING).update(
            status=StepRun.Status.PENDING, claim=None, lease_expires_at=None, started_at=None,
            attempt=step_run.attempt - 1))

    def hold(self, claim: Claim, reason: str) -> bool:
        """Give back a claimed step of a paused process without running it (store.pauses):
        pending, due only at HELD_UNTIL, so neither a doorbell nor the sweeper takes it
        until continue_held; its run shows `waiting`. The attempt is not counted. False
        (nothing written: run the step) when the process was resumed meanwhile."""
        step_run = claim.step_run
        log = {"message": f"held: {reason}", "at": timezone.now().isoformat(), "event": "held"}
        still_paused = Exists(paused_rows().filter(process_id=step_run.run.process_id))
        with transaction.atomic(using=self.using):
            held = StepRun.objects.filter(
                still_paused, pk=step_run.pk, claim=step_run.claim,
                status=StepRun.Status.RUNNING).update(
                status=StepRun.Status.PENDING, claim=None, lease_expires_at=None,
                started_at=None, attempt=step_run.attempt - 1, not_before=HELD_UNTIL,
                logs=[*step_run.logs, log])
            if held:
                Run.objects.filter(pk=step_run.run_id, status=Run.Status.RUNNING).update(
                    status=Run.Status.WAITING)
        return bool(held)

    def continue_held(self, process_ids: list[int] | None) -> int:
        """Make the held steps of these processes (None: of every process not paused, the
        sweeper's pass) due now and ring for them, each on its priority's queue (a
        resume). Returns how many."""
        held = StepRun.objects.filter(status=StepRun.Status.PENDING, not_before=HELD_UNTIL)
        if process_ids is None:
            held = held.exclude(run__process_id__in=paused_rows().values("process_id"))
        else:
            held = held.filter(run__process_id__in=process_ids)
        with transaction.atomic(using=self.using):
            rows = list(held.values_list("pk", "priority"))
            StepRun.objects.filter(pk__in=[pk for pk, _ in rows]).update(not_before=None)
            for priority in {p for _, p in rows}:
                enqueue_many([pk for pk, p in rows if p == priority], priority=priority)
        return len(rows)

    # -- recording ---------------------------------------------------------------------

    def record(self, claim: Claim, outcome: Outcome, *, duration_ms: int,
               handover: Handover | None = None) -> None:
        recording.record(claim, outcome, duration_ms=duration_ms, handover=handover)

    def record_group(self, items: list[tuple[Claim, Outcome, int]]) -> None:
        """Record `(claim, outcome, duration_ms)` of claimed steps with no outside effect
        together, in one transaction with their runs' ends (store.grouped)."""
        grouped.record_group(self, items)

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

    def cancel(self, run: Run, *, message: str = "Cancelled.") -> Run:
        """Cancel the run, then its sub-process runs (and theirs): each child after its
        parent's cancel committed, so a child ending at the same moment (which locks
        child, then parent) never waits on a lock this holds (store.subprocesses)."""
        with transaction.atomic(using=self.using):
            run = Run.objects.select_for_update().get(pk=run.pk)
            if run.is_finished:
                raise RunStateError(f"The run is already {run.status}.")
            self._cancel_locked(run, code="cancelled", message=message)
            gates.release(run)
        for child in subprocesses.active_children(run):
            self._cancel_child(child, parent=run)
        return run

    def _cancel_child(self, child: Run, *, parent: Run) -> None:
        try:
            self.cancel(child, message=f"Cancelled with its parent execution {parent.pk}.")
        except RunStateError:
            pass  # it ended meanwhile

    def repair_subprocesses(self, *, limit: int = 500) -> int:
        """What a crash between two transactions can leave of sub-processes: a child
        still active under an ended parent is cancelled, and a parent step still waiting
        on an ended child finishes with it. Returns how many were repaired."""
        repaired = 0
        for child in subprocesses.orphans(limit):
            self._cancel_child(child, parent=child.parent_run)
            repaired += 1
        for child in subprocesses.unresumed(limit):
            with transaction.atomic(using=self.using):
                repaired += recording.resume_parent(child)
        return repaired

    def _cancel_locked(self, run: Run, *, code: str, message: str) -> None:
        """Cancel `run`, whose row lock the caller holds."""
        run.status, run.finished_at = Run.Status.CANCELLED, timezone.now()
        run.error = {"message": message, "step": None, "code": code}
        run.save(update_fields=["status", "finished_at", "error"])
        settling.stop_active_steps(run, reason="cancel")
        hooks.run_ended(run)  # a cancelled child fails the parent step waiting for it
        waiting.announce(run)

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
