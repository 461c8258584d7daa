"""Batches: one process over every entity a filter matches, or a re-run of every run a
filter matches (docs/user-guide/operating-runs.md#bulk-re-run).

Creating a batch only counts and records it (fast, whatever the size); the worker
fans out in chunks by primary key, so memory stays flat and cancel takes effect
between chunks. A batch with `rate_per_second` starts no more than that many runs a
second; a paused batch's fan-out stops at its cursor and a resume goes on from there."""

import logging
import math
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from functools import partial
from typing import Any, NamedTuple

from django.conf import settings
from django.db import OperationalError, connections, transaction
from django.db.models import Count, Exists, F, OuterRef, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from automation.exceptions import (
    AutomationError,
    BatchFinishedError,
    ProcessDisabledError,
    RunStateError,
)
from automation.models import ApiProcess, Batch, Run
from automation.services.reruns import (
    VERSIONS,
    RerunInvalidError,
    failed_step,
    run_rerun,
    stopped_by_failure,
)
from automation.services.runs import (
    priority_check,
    run_cancel,
    run_priority,
    run_retry,
    run_start,
)
from automation.store import get_store
from automation.store.graphs import concurrency_for, graph_for
from entities.models import Entity, EntityType
from entities.selectors import entity_filter

# Runs per transaction: 2,000 fan out ~1.6x faster than 500, 5,000 no faster within the
# noise (docs/performance.md, chunk size); memory stays flat.
CHUNK = 2000
logger = logging.getLogger(__name__)


def batch_entities(entity_type: EntityType, spec: dict):
    return entity_filter(Entity.objects.filter(entity_type=entity_type), spec or {})


def batch_create(*, entity_type: EntityType, process: ApiProcess, filter: dict | None = None,
                 user=None, rate_per_second: float | None = None, priority: str = "") -> Batch:
    """A batch of the process over the entities `filter` matches; `priority` (high /
    normal / low, blank: the process's) is its runs' (docs/user-guide/priority.md)."""
    priority_check(priority)
    if not process.enabled:
        raise ProcessDisabledError(f"The process '{process.slug}' is disabled.")
    with transaction.atomic():
        batch = Batch.objects.create(
            entity_type=entity_type, process=process, filter=filter or {}, created_by=user,
            rate_per_second=rate_per_second, priority=priority or "",
            total=batch_entities(entity_type, filter or {}).count(),
        )
        transaction.on_commit(lambda: _enqueue_fanout(batch.pk))
    return batch


def _enqueue_fanout(batch_id) -> None:
    if settings.Q_CLUSTER.get("sync"):
        batch_fanout_run(batch_id)
        return
    from django_q.tasks import async_task

    try:
        async_task(
            "automation.tasks.batch_fanout", str(batch_id), timeout=3600, save=False, sync=False
        )
    except Exception:  # the batch is committed: the sweeper enqueues its fan-out later
        logger.warning(
            "could not enqueue the fan-out of batch %s; the sweeper will", batch_id, exc_info=True
        )


def batches_sweep(*, older_than_seconds: float = 60) -> int:
    """Enqueue the fan-out of batches that should be fanning out and have no live fan-out
    task: one that never started (its task was lost), or whose task's hold ran out (its
    worker died mid-way, or a resume's task was lost). A second delivery is harmless:
    only one task holds a batch at a time (FanoutLease), and it goes on from the batch's
    cursor, with runs unique per (batch, entity)."""
    now = timezone.now()
    cutoff = now - timedelta(seconds=older_than_seconds)
    unheld = Q(fanout_until__isnull=True) | Q(fanout_until__lt=now)
    should_fan_out = (Q(status=Batch.Status.PENDING, started_at__isnull=True)
                      | Q(status=Batch.Status.FANNING_OUT))
    ids = list(Batch.objects.filter(should_fan_out, unheld, created_at__lte=cutoff)
               .values_list("pk", flat=True)[:100])
    for batch_id in ids:
        _enqueue_fanout(batch_id)
    return len(ids)


# A rate-limited fan-out starts its runs in slices this long (seconds), then waits.
RATE_SLICE = 0.1


class FanoutLease:
    """The one fan-out task working on a batch holds it for
    ENTITYFLOW_FANOUT_LEASE_SECONDS at a time, renewing it (between chunks and while it
    waits for the rate limit) once a third of it has passed. A second delivery of the
    task (the ORM broker's redelivery, the sweeper's, a resume's while the paused task
    has not stopped yet) finds the batch held and leaves it; once a hold has run out (the
    worker died) the sweeper starts the fan-out again and the new task takes it."""

    def __init__(self, batch_id):
        self.batch_id, self.token = batch_id, uuid.uuid4()
        self.seconds = settings.ENTITYFLOW_FANOUT_LEASE_SECONDS
        self.renewed = time.monotonic()

    def take(self) -> bool:
        """Take the batch if it is to fan out and nobody holds it; the fan-out starts."""
        now = timezone.now()
        return bool(Batch.objects.filter(
            Q(fanout_until__isnull=True) | Q(fanout_until__lt=now), pk=self.batch_id,
            status__in=(Batch.Status.PENDING, Batch.Status.FANNING_OUT),
        ).update(status=Batch.Status.FANNING_OUT, fanout_token=self.token,
                 fanout_until=now + timedelta(seconds=self.seconds),
                 started_at=Coalesce("started_at", Value(now))))

    def renew(self) -> bool:
        """Hold the batch longer; False once it stopped fanning out (paused, cancelled)
        or another task took it after this one's hold ran out."""
        self.renewed = time.monotonic()
        return bool(Batch.objects.filter(
            pk=self.batch_id, status=Batch.Status.FANNING_OUT, fanout_token=self.token,
        ).update(fanout_until=timezone.now() + timedelta(seconds=self.seconds)))

    def holds(self) -> bool:
        """Whether the batch is still fanning out and held by this task, renewing the hold
        once a third of it has passed. Otherwise only read: an UPDATE of the batch's row
        would wait for the commit of the chunk still open on another connection (which
        moves the batch's cursor), and so undo OverlappedChunks' overlap."""
        if time.monotonic() - self.renewed > self.seconds / 3:
            return self.renew()
        return Batch.objects.filter(pk=self.batch_id, status=Batch.Status.FANNING_OUT,
                                    fanout_token=self.token).exists()

    def wait_until(self, moment: float) -> bool:
        """Sleep until time.monotonic() reaches `moment`, renewing the hold meanwhile;
        False as soon as a renewal says the fan-out is to stop."""
        while (left := moment - time.monotonic()) > 0:
            time.sleep(min(left, self.seconds / 3))
            if left > self.seconds / 3 and not self.holds():
                return False
        return True

    def release(self) -> None:
        Batch.objects.filter(pk=self.batch_id, fanout_token=self.token).update(
            fanout_token=None, fanout_until=None)


def batch_fanout_run(batch_id) -> None:
    """Fan the batch out from its cursor, unless it is finished, paused or cancelled, or
    another task holds it. Taken again after a stop: a batch paused and resumed while
    this task was stopping has no other task to go on with it (the resume's found it
    held)."""
    lease = FanoutLease(batch_id)
    while lease.take():
        try:
            _fan_out(Batch.objects.select_related("process__current_version").get(pk=batch_id),
                     lease)
        finally:
            lease.release()


def _fan_out(batch: Batch, lease: FanoutLease) -> None:
    version_id = batch.process.current_version_id
    if batch.kind == Batch.Kind.RERUNS:
        items, create = _rerun_items(batch), _create_reruns
    else:
        items = batch_entities(batch.entity_type, batch.filter).values_list("pk", flat=True)
        create = _create_chunk if concurrency_for(version_id) is None else _create_gated_chunk
    items = items.order_by("pk")
    rate = batch.rate_per_second
    size = max(1, min(CHUNK, math.ceil(rate * RATE_SLICE))) if rate else CHUNK
    # Set-based chunks overlap where the database can write on two connections at once;
    # not inside a caller's transaction (the chunks' connections could not see it).
    overlap = (create is _create_chunk and get_store().features.concurrent_writes
               and not transaction.get_connection().in_atomic_block)
    finds_itself = create is _create_chunk and get_store().features.chunk_finds_itself
    began, sent, every_chunk, first = time.monotonic(), 0, False, True
    with (OverlappedChunks() if overlap else SequentialChunks()) as chunks:
        while True:
            # still fanning out and still this task's (taking it was the first check)
            if not (first or lease.holds()) or chunks.stopped():
                break  # cancelled, or paused: a resume goes on from the cursor
            first = False
            rest = items.filter(pk__gt=batch.cursor) if batch.cursor else items
            if finds_itself:  # its statements find the chunk: (last key, count, last one)
                found = chunks.write(partial(create, batch, rest, size))
            else:  # bounded by its last key first, then written over that key range
                chunk = _next_chunk(rest, size, load=batch.kind == Batch.Kind.RERUNS)
                found = chunk and (chunk.last, chunk.count, chunk.last_one)
                if chunk is not None:
                    extent = chunk.count if create is _create_chunk else chunk.last
                    chunks.write(partial(create, batch, chunk.items, extent,
                                         last_chunk=chunk.last_one))
            if not found:
                every_chunk = True
                break
            last, count, last_chunk = found
            batch.cursor = str(last)
            sent += count
            if last_chunk:  # it also marked the batch fanned out (_move_cursor)
                every_chunk = True
                break
            # the n-th run starts no earlier than n / rate seconds after the first
            if rate and not lease.wait_until(began + sent / rate):
                break
        if not chunks.finish() or not every_chunk:  # an error in a chunk is raised here
            return
    # After the last chunk's commit and its doorbells (rung on commit): the fan-out's end.
    # The last chunk moved the batch on to `running` in its own commit (a fan-out whose
    # last chunk was not known as such does it here); `fanned_out_at` is the moment its
    # doorbells were sent too, so it is written only now, even if the runs finished first.
    Batch.objects.filter(pk=batch.pk, status=Batch.Status.FANNING_OUT).update(**_FANNED_OUT)
    Batch.objects.filter(pk=batch.pk, fanned_out_at__isnull=True, status__in=(
        Batch.Status.RUNNING, Batch.Status.COMPLETED)).update(fanned_out_at=timezone.now())


# What the commit of a batch's last chunk writes besides the chunk: from there the batch
# is `running` until its runs finish (batch_progress), so a batch whose last run is
# written and finished is complete even if the fan-out's task dies right after that
# commit (its `fanned_out_at` then stays empty: the fan-out did not see its doorbells
# sent).
_FANNED_OUT = {"status": Batch.Status.RUNNING}


# What a chunk that finds its own entities found: its last key, how many it has, and
# whether it is the batch's last.
Found = tuple[uuid.UUID, int, bool]


class ChunkStopped(Exception):
    """The batch stopped fanning out (cancelled or paused) before a chunk moved its
    cursor: the chunk's transaction rolls back, so it wrote nothing."""


def _move_cursor(batch: Batch, last, created: int, *, last_chunk: bool = False) -> None:
    """In the chunk's transaction: the cursor past `last`, only while the batch is still
    fanning out. A cancel or pause committed meanwhile makes the chunk write nothing
    (ChunkStopped), so no run of it starts after the cancel has looked for runs to
    cancel; a resume writes it again from the cursor. The last chunk also ends the
    fan-out in the same commit, so no moment shows the batch's runs all written and the
    batch still fanning out (a worker stopped right after it cannot leave it so)."""
    if not Batch.objects.filter(pk=batch.pk, status=Batch.Status.FANNING_OUT).update(
            cursor=str(last), created_runs=F("created_runs") + created,
            **(_FANNED_OUT if last_chunk else {})):
        raise ChunkStopped


class SequentialChunks:
    """Each chunk written and committed before the next one is looked for."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def write(self, create: Callable[..., Found | None]) -> Found | None:
        """Write a chunk; what it returns (a chunk that finds its own entities: its last
        key and count, None when none was left)."""
        try:
            return create()
        except ChunkStopped:
            self._stopped = True
            return None

    def stopped(self) -> bool:
        return getattr(self, "_stopped", False)

    def finish(self) -> bool:
        """Whether every chunk was written (False: the batch stopped fanning out)."""
        return not self.stopped()


class OverlappedChunks:
    """PostgreSQL (store features.concurrent_writes): a chunk's statements run while the
    chunk before it commits. The statements are the database's CPU and the commit is the
    disk's flush of the chunk's write-ahead log, about as long each
    (docs/performance.md, "Batch fan-out"), so overlapping them nearly halves a chunk.

    Two threads, each with its own connection, take the chunks in turn; each chunk is
    its own transaction, as in SequentialChunks. A chunk moves the batch's cursor and
    commits only once the chunk before it has committed (and rolls back if that one
    failed or stopped), so what is committed is always the first chunks in order: a
    crash or an error leaves the cursor past the last committed chunk, exactly as one
    chunk at a time does, and a redelivered fan-out goes on from there. At most two
    chunks are open at once, and the next chunk's statements start only after this
    one's are done, so the database runs one chunk statement at a time."""

    def __init__(self):
        self._writers = [_Writer(), _Writer()]
        self._written: list[Future] = []

    def __enter__(self):
        for writer in self._writers:
            writer.start()
        return self

    def __exit__(self, *exc) -> None:
        for writer in self._writers:
            writer.stop()

    def write(self, create: Callable[..., Found | None]) -> Found | None:
        """Hand a chunk to the next writer and wait for its statements; what they found
        (`before_cursor`'s argument, as SequentialChunks.write returns it)."""
        previous = self._written[-1] if self._written else None
        if len(self._written) >= 2:  # this chunk's writer is free once its last chunk is
            self._result(self._written[-2])
        statements_done = threading.Event()
        found = []

        def after_statements(result: Found | None = None) -> None:
            found.append(result)
            statements_done.set()
            if previous is not None:
                previous.result()  # raises when it failed or stopped: this one rolls back

        def chunk() -> None:
            try:
                create(before_cursor=after_statements)
            finally:
                statements_done.set()

        self._written.append(self._writers[len(self._written) % 2].submit(chunk))
        statements_done.wait()
        return found[0] if found else None

    def stopped(self) -> bool:
        return any(f.done() and f.exception() is not None for f in self._written)

    def finish(self) -> bool:
        for future in self._written:
            if not self._result(future):
                return False
        return True

    @staticmethod
    def _result(future: Future) -> bool:
        """Wait for a chunk; False when the batch stopped fanning out, any other error
        raised here."""
        try:
            future.result()
        except ChunkStopped:
            return False
        return True


class _Writer:
    """A thread that runs chunks one after another on a database connection of its own,
    closed when it stops."""

    def __init__(self):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="batch-chunk-writer",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, job: Callable[[], None]) -> Future:
        future: Future = Future()
        self._jobs.put((job, future))
        return future

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join()

    def _run(self) -> None:
        try:
            while (item := self._jobs.get()) is not None:
                job, future = item
                try:
                    future.set_result(job())
                except BaseException as exc:  # noqa: BLE001 - handed to the fan-out's thread
                    future.set_exception(exc)
        finally:
            connections.close_all()


class Chunk(NamedTuple):
    items: Any  # the items' ids (loaded) or a queryset bounded by `last`
    last: Any  # the last item's key: the cursor after this chunk
    count: int
    last_one: bool  # no item is left after it


def _next_chunk(rest, size: int, *, load: bool) -> Chunk | None:
    """The next `size` items by primary key, or None when there are none; whether it is
    the last chunk is read with it (one item looked past its end). Entities stay in the
    database: the chunk is a queryset bounded by its last key (the store writes their
    runs with INSERT … SELECT). Re-runs are started one by one in Python anyway, so their
    ids are loaded (`load`)."""
    if load:
        ids = list(rest[:size + 1])
        chunk = ids[:size]
        return Chunk(chunk, chunk[-1], len(chunk), len(ids) <= size) if ids else None
    at_end = list(rest[size - 1:size + 1])
    if at_end:  # the size-th item, and the one after it if there is one
        return Chunk(rest.filter(pk__lte=at_end[0]), at_end[0], size, len(at_end) == 1)
    last = next(iter(rest.reverse()[:1]), None)  # fewer than `size` left: all of them
    if last is None:
        return None
    return Chunk(rest.filter(pk__lte=last), last, rest.count(), True)


def _create_chunk(batch: Batch, entities, size: int, *, last_chunk: bool = False,
                  before_cursor: Callable[[Found | None], None] | None = None
                  ) -> Found | None:
    """One chunk's runs and first steps, set-based over the first `size` of `entities`
    (the batch's entity ids past its cursor) by key: the store's statements find the
    chunk and write it, and ring for its steps in one broker round trip after the
    commit. Then the batch's cursor moves past the chunk's last key, in the same
    transaction. Returns the chunk's (last key, count), None when no entity was left;
    `before_cursor` is called with the same between the two (OverlappedChunks goes on
    from there to the next chunk, and waits there for the chunk before). A chunk that
    found fewer than `size`, or is known to be the last (`last_chunk`), ends the fan-out
    in its commit."""
    version = batch.process.current_version
    graph = graph_for(version.pk)
    trigger = {"type": "batch", "batchId": str(batch.pk)}
    template = Run(id=uuid.uuid4(), process=batch.process, version=version, batch=batch,
                   trigger=trigger, status=Run.Status.PENDING,
                   priority=run_priority(graph, trigger, batch.priority),
                   idempotency_key=f"batch:{batch.pk}:")
    with _chunk_transaction():
        written = get_store().start_chunk(template, entities, graph.steps[graph.start],
                                          key_prefix=f"batch:{batch.pk}:", size=size)
        last_chunk = last_chunk or written.last_one or written.count < size
        found = (written.last, written.count, last_chunk) if written.count else None
        if before_cursor is not None:
            before_cursor(found)
        if found is not None:
            _move_cursor(batch, written.last, written.created, last_chunk=last_chunk)
    return found


# How often a chunk's transaction asks again for SQLite's write lock while a worker holds
# it (_chunk_transaction).
LOCK_POLL_SECONDS = 0.0005


@contextmanager
def _chunk_transaction() -> Iterator[None]:
    """`transaction.atomic()` for a chunk; on SQLite its BEGIN IMMEDIATE asks for the one
    write lock again every LOCK_POLL_SECONDS until it gets it, instead of SQLite's own
    wait. SQLite's wait (the connection's busy timeout) sleeps longer after each try, up
    to 100 ms, and the workers' claims and records take the lock again between its
    tries: a chunk waited 105 ms for the lock on average, 40 % of the fan-out's time
    (docs/performance.md, "Batch fan-out on SQLite: the chunk asks for the lock").
    The transaction is the same, and so is the time after which it fails as "database
    is locked" (the busy timeout), which the connection keeps for every other
    statement."""
    connection = transaction.get_connection()
    if connection.vendor != "sqlite" or connection.in_atomic_block:
        with transaction.atomic():
            yield
        return
    timeout_ms = _busy_timeout(connection)
    deadline = time.monotonic() + timeout_ms / 1000
    stack = ExitStack()
    _busy_timeout(connection, 0)
    try:
        while True:
            try:
                stack.enter_context(transaction.atomic())
                break
            except OperationalError as exc:  # BEGIN IMMEDIATE refused: a worker writes
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(LOCK_POLL_SECONDS)
    finally:
        _busy_timeout(connection, timeout_ms)
    with stack:
        yield


def _busy_timeout(connection, milliseconds: int | None = None) -> int:
    """SQLite's busy timeout of `connection` (PRAGMA busy_timeout), set first when given."""
    with connection.cursor() as cursor:
        if milliseconds is not None:
            cursor.execute(f"PRAGMA busy_timeout = {int(milliseconds)}")
        cursor.execute("PRAGMA busy_timeout")
        return cursor.fetchone()[0]


def _create_gated_chunk(batch: Batch, entities, last, *, last_chunk: bool = False) -> None:
    """A chunk of a process with a concurrency rule: its runs are started one by one the
    way a single start is (store.gates counts the runs holding a slot and starts, queues
    or cancels each), which a set-based INSERT … SELECT cannot. Each start is its own
    short transaction, so the gates are never held for a whole chunk; the key
    `batch:<batch>:<entity>` makes a chunk done again start nothing twice
    (docs/user-guide/batches.md#processes-with-a-concurrency-rule)."""
    version = batch.process.current_version
    trigger = {"type": "batch", "batchId": str(batch.pk)}

    def start(entity) -> bool:
        return run_start(
            process=batch.process, trigger=trigger, entity=entity, batch=batch,
            idempotency_key=f"batch:{batch.pk}:{entity.pk}", version=version,
            priority=batch.priority or None, breaker=False)[1]

    _start_one_by_one(batch, Entity.objects.filter(pk__in=entities).order_by("pk"), last,
                      start, last_chunk=last_chunk)


def _start_one_by_one(batch: Batch, items, last, start: Callable[[Any], bool], *,
                      last_chunk: bool) -> None:
    """A chunk whose runs start one by one, each in a short transaction of its own
    (`start` says whether it started a run). The chunk's last start commits with the
    cursor past `last` and the count of runs started, and, in the batch's last chunk,
    with the fan-out's end: no moment shows the batch's runs all started and the batch
    still fanning out. A pause or cancel is seen before the next chunk."""
    items = list(items)  # one chunk, at most CHUNK items
    closing = items.pop() if items else None
    created = 0
    for item in items:
        with transaction.atomic():
            created += bool(start(item))
    with transaction.atomic():
        created += closing is not None and bool(start(closing))
        _cursor_after_starts(batch, last, created, last_chunk=last_chunk)


def _cursor_after_starts(batch: Batch, last, created: int, *, last_chunk: bool) -> None:
    Batch.objects.filter(pk=batch.pk).update(cursor=str(last),
                                             created_runs=F("created_runs") + created)
    if last_chunk:
        Batch.objects.filter(pk=batch.pk, status=Batch.Status.FANNING_OUT).update(
            **_FANNED_OUT)


def latest_attempts(batch: Batch):
    """The batch's runs, each item counted once: a run retried inside the batch is
    replaced by its newer attempt (services.reruns)."""
    superseded = Run.objects.filter(rerun_of=OuterRef("pk"), batch_id=batch.pk)
    return batch.runs.filter(~Exists(superseded))


# -- re-run batches ------------------------------------------------------------------

RERUN_FILTER_KEYS = ("status", "failedAt", "createdFrom", "createdTo", "errorContains")


def rerun_candidates(process: ApiProcess, spec: dict, *, until=None):
    """The runs of `process` a bulk re-run filter matches: `status` (default failed),
    `failedAt` (a step id), `createdFrom`/`createdTo`, `errorContains`. A run that was
    re-run already is represented by its latest attempt, so it is not re-run twice.
    `until`: runs created up to then (a batch's own re-runs never join it)."""
    runs = Run.objects.filter(process=process, status=spec.get("status") or Run.Status.FAILED)
    if spec.get("failedAt"):
        runs = runs.filter(error__step=spec["failedAt"])
    if spec.get("createdFrom"):
        runs = runs.filter(created_at__gte=spec["createdFrom"])
    if spec.get("createdTo"):
        runs = runs.filter(created_at__lte=spec["createdTo"])
    if spec.get("errorContains"):
        runs = runs.filter(error__message__icontains=spec["errorContains"])
    if until is not None:
        runs = runs.filter(created_at__lte=until)
    return runs.filter(~Exists(Run.objects.filter(rerun_of=OuterRef("pk"))))


def batch_rerun_preview(*, process: ApiProcess, filter: dict, sample: int = 10) -> dict:
    runs = rerun_candidates(process, filter)
    return {"count": runs.count(),
            "sample": list(runs.order_by("-created_at")[:sample])}


def batch_rerun_create(*, process: ApiProcess, filter: dict, from_step: str | None = None,
                       version: str = "pinned", repeat_effects: bool = False,
                       rate_per_second: float | None = None, user=None,
                       priority: str = "") -> Batch:
    """A batch whose items are runs: each matching run is re-run once (services.reruns),
    from `from_step` or, without one, from the step it failed at; at `priority`, blank:
    each run's own."""
    priority_check(priority)
    if version not in VERSIONS:
        raise RerunInvalidError("version must be 'pinned' or 'latest'.",
                                fields={"version": ["Use 'pinned' or 'latest'."]})
    if rate_per_second is not None and not 0 < rate_per_second <= 1000:
        raise RerunInvalidError("ratePerSecond must be above 0 and at most 1000.",
                                fields={"ratePerSecond": ["Between 0 (excluded) and 1000."]})
    with transaction.atomic():
        batch = Batch.objects.create(
            kind=Batch.Kind.RERUNS, process=process, entity_type=process.entity_type,
            filter=filter, created_by=user, rate_per_second=rate_per_second,
            priority=priority or "", rerun={"fromStep": from_step, "version": version,
                   "repeatEffects": bool(repeat_effects)})
        # Frozen at the batch's creation: the re-runs it starts never match it.
        batch.total = rerun_candidates(process, filter, until=batch.created_at).count()
        Batch.objects.filter(pk=batch.pk).update(total=batch.total)
        transaction.on_commit(lambda: _enqueue_fanout(batch.pk))
    return batch


def _rerun_items(batch: Batch):
    return rerun_candidates(batch.process, batch.filter, until=batch.created_at
                            ).values_list("pk", flat=True)


def _create_reruns(batch: Batch, run_ids: list, last, *, last_chunk: bool = False) -> None:
    """Each run re-run once: the key `rerun:<batch>:<run>` makes a second fan-out of the
    same runs (a redelivered task) write nothing."""
    spec = batch.rerun or {}

    def start(run: Run) -> bool:
        key = f"rerun:{batch.pk}:{run.pk}"
        retry = not spec.get("fromStep")
        try:
            with transaction.atomic():
                run_rerun(run=run, from_step=spec.get("fromStep") or failed_step(run),
                          restart=stopped_by_failure(run) if retry else (),
                          version=spec.get("version") or "pinned",
                          repeat_effects=bool(spec.get("repeatEffects")),
                          user=batch.created_by, batch=batch, idempotency_key=key,
                          reason="rerun")
        except AutomationError as exc:  # this run cannot be re-run so: say so, go on
            logger.warning("batch %s: run %s not re-run: %s", batch.pk, run.pk, exc.message)
            Batch.objects.filter(pk=batch.pk).update(total=F("total") - 1)
            return False
        return True

    _start_one_by_one(batch, Run.objects.filter(pk__in=run_ids).order_by("pk")
                      .select_related("process", "version"), last, start,
                      last_chunk=last_chunk)


def batch_pause(*, batch: Batch) -> Batch:
    """Stop starting runs (the runs started go on); only while the batch is fanning out."""
    if not Batch.objects.filter(pk=batch.pk, status__in=(
            Batch.Status.PENDING, Batch.Status.FANNING_OUT)).update(status=Batch.Status.PAUSED):
        batch.refresh_from_db()
        raise RunStateError(f"Only a batch that is starting runs can be paused; this one is "
                            f"{batch.status}.")
    batch.refresh_from_db()
    return batch


def batch_resume(*, batch: Batch) -> Batch:
    if not Batch.objects.filter(pk=batch.pk, status=Batch.Status.PAUSED).update(
            status=Batch.Status.FANNING_OUT):
        batch.refresh_from_db()
        raise RunStateError(f"Only a paused batch can be resumed; this one is {batch.status}.")
    transaction.on_commit(lambda: _enqueue_fanout(batch.pk))
    batch.refresh_from_db()
    return batch


def batch_progress(batch: Batch) -> dict:
    counts = dict(latest_attempts(batch).values_list("status").annotate(n=Count("id"))
                  .values_list("status", "n"))
    done, failed = counts.get(Run.Status.COMPLETED, 0), counts.get(Run.Status.FAILED, 0)
    cancelled = counts.get(Run.Status.CANCELLED, 0)
    running = counts.get(Run.Status.RUNNING, 0) + counts.get(Run.Status.WAITING, 0)
    queued = max(0, batch.total - done - failed - cancelled - running)
    # a finished batch's rate is over its own lifetime, not one that keeps growing
    until = batch.finished_at or timezone.now()
    elapsed = (until - batch.started_at).total_seconds() if batch.started_at else 0
    rate = (done + failed) / elapsed if elapsed > 0 else 0.0
    remaining = batch.total - done - failed - cancelled
    finished = remaining <= 0 and batch.status != Batch.Status.FANNING_OUT
    if finished and batch.status == Batch.Status.RUNNING:
        Batch.objects.filter(pk=batch.pk, status=Batch.Status.RUNNING).update(
            status=Batch.Status.COMPLETED, finished_at=timezone.now())
        batch.refresh_from_db(fields=["status", "finished_at"])
    return {
        "id": str(batch.pk),
        "status": batch.status,
        "total": batch.total,
        "queued": queued,
        "running": running,
        "done": done,
        "failed": failed,
        "cancelled": cancelled,
        "percent": round(100 * (done + failed + cancelled) / batch.total, 1)
        if batch.total
        else 100.0,
        "ratePerSecond": round(rate, 2),
        "etaSeconds": round(remaining / rate) if rate > 0 and remaining > 0 else None,
    }


UNFINISHED = (Batch.Status.PENDING, Batch.Status.FANNING_OUT, Batch.Status.RUNNING)


def batch_cancel(*, batch: Batch) -> Batch:
    """Cancel a batch that is still going; a finished one (completed or cancelled) is a
    BatchFinishedError (409) and keeps its status and finish time."""
    batch_progress(batch)  # a batch whose runs all finished is completed, not cancellable
    changed = Batch.objects.filter(pk=batch.pk, status__in=UNFINISHED).update(
        status=Batch.Status.CANCELLED, finished_at=timezone.now())
    if not changed:
        batch.refresh_from_db()
        raise BatchFinishedError(f"The batch has already finished (status {batch.status}).")
    for run in batch.runs.exclude(status__in=Run.FINISHED):
        try:
            run_cancel(run=run)
        except RunStateError:
            pass
    batch.refresh_from_db()
    return batch


def batch_retry_failed(*, batch: Batch) -> int:
    """Retry only the failed runs, each from its failed step."""
    retried = 0
    for run in latest_attempts(batch).filter(status=Run.Status.FAILED):
        run_retry(run=run)
        retried += 1
    if retried:
        Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.RUNNING, finished_at=None)
    return retried
