"""The queue is a doorbell: it only says "step N may be ready". The step-run rows
decide whether anything runs (the store's claim); docs/architecture.md, "Durability".

A doorbell is a django-q2 task naming `automation.tasks.step_execute` by its dotted
path. In synchronous mode (unit tests, `run_process --sync`) a ring runs the step right
here instead, through the runner the worker side registers (`set_synchronous_runner`):
the store never imports the engine."""

import logging
import threading
import uuid
from collections import deque
from datetime import datetime
from functools import lru_cache

from django.conf import settings
from django.db import router, transaction
from django.utils import timezone

from automation.models import Priority, StepRun

logger = logging.getLogger(__name__)
TASK = "automation.tasks.step_execute"
_local = threading.local()
NORMAL = Priority.NORMAL


def enqueue_step(step_run_id: int, *, timeout: int | None = None,
                 priority: str = NORMAL, due: datetime | None = None) -> None:
    """Ring the doorbell once the current transaction commits (never for a rollback),
    on the queue of the step's priority (store.queues).

    Ringing fails soft: what was committed stays committed, and a step whose doorbell
    was lost (broker down) is found and rung again by the sweeper.

    With the ORM broker on our own database the doorbell is a row written in the same
    transaction instead: no worker can see it before the step's row, a rollback takes
    it back, and the commit cannot lose it (one write transaction fewer per step).

    A step due later (a retry's backoff, a rate limit's deferral) gets a delayed doorbell
    for `due` (enqueue_later).
    """
    if due is not None:
        enqueue_later(TASK, step_run_id, due, priority=priority, timeout=timeout)
        return
    if _queue_in_transaction():
        send_step(step_run_id, timeout=timeout, priority=priority)
        return
    package = _package_ahead(step_run_id, timeout)
    transaction.on_commit(lambda: ring(step_run_id, timeout=timeout, priority=priority,
                                       package=package))


def _package_ahead(step_run_id: int, timeout: int | None) -> str | None:
    """The doorbell's task package (pickled and signed) built now, before the commit, so
    that after it only the push is left: the time from a save's commit to its first step
    (docs/performance.md, "First step on PostgreSQL"). None where nothing is sent (sync
    mode) or it cannot be built here (then ring builds it, and says why it could not)."""
    if settings.Q_CLUSTER.get("sync"):
        return None
    try:
        return _package(TASK, (step_run_id,), timeout)
    except Exception:  # ring meets it again after the commit, and logs it
        return None


def _queue_in_transaction() -> bool:
    alias = router.db_for_write(StepRun)
    return queue_shares(alias) and not transaction.get_autocommit(using=alias)


def queue_shares(using: str) -> bool:
    """Whether the step's doorbell is a row of the database `using` itself (the ORM
    broker on the engine's database), written in the transaction that writes the step;
    else it is sent after the commit (Redis, the queue's own SQLite file, sync mode)."""
    from django_q.brokers.orm import ORM

    alias = settings.Q_CLUSTER.get("orm")
    if settings.Q_CLUSTER.get("sync") or not alias or not isinstance(_broker(), ORM):
        return False
    return alias == using


def ring(step_run_id: int, *, timeout: int | None = None, priority: str = NORMAL,
         package: str | None = None) -> bool:
    """Send one doorbell now (its `package` when built already); False (logged) when the
    broker would not take it. (In synchronous mode the step runs here, and its errors are
    not the broker's.)"""
    if settings.Q_CLUSTER.get("sync"):
        _run_inline(step_run_id)
        return True
    try:
        send_step(step_run_id, timeout=timeout, priority=priority, package=package)
    except Exception:  # the database is the truth: the sweeper rings again later
        logger.warning("could not enqueue step run %s; the sweeper will ring again",
                       step_run_id, exc_info=True)
        return False
    return True


def enqueue_many(step_run_ids: list[int], *, timeout: int | None = None,
                 priority: str = NORMAL) -> None:
    """enqueue_step for many: in the transaction with the ORM broker, else after commit."""
    if _queue_in_transaction():
        _send_many(step_run_ids, timeout=timeout, priority=priority)
        return
    transaction.on_commit(lambda: ring_many(step_run_ids, timeout=timeout, priority=priority))


def ring_many(step_run_ids: list[int], *, timeout: int | None = None,
              priority: str = NORMAL) -> None:
    """One broker round trip for many doorbells where the broker allows it (after commit)."""
    if settings.Q_CLUSTER.get("sync"):
        for step_run_id in step_run_ids:
            ring(step_run_id, timeout=timeout, priority=priority)
        return
    try:
        _send_many(step_run_ids, timeout=timeout, priority=priority)
    except Exception:
        logger.warning("could not enqueue %d step runs; the sweeper will ring again",
                       len(step_run_ids), exc_info=True)


def send_step(step_run_id: int, *, timeout: int | None = None, priority: str = NORMAL,
              package: str | None = None) -> None:
    """`package`: the step's, built already (_package_ahead)."""
    if settings.Q_CLUSTER.get("sync"):
        _run_inline(step_run_id)
        return
    if package is not None:
        _send_packages([package], priority)
        return
    _send_many([step_run_id], timeout=timeout, priority=priority)


def _send_many(step_run_ids: list[int], *, timeout: int | None = None,
               priority: str = NORMAL) -> None:
    """Redis: one RPUSH for all of them; ORM broker: one multi-row INSERT; on the queue
    of `priority` (store.queues)."""
    _send_packages([_package(TASK, (step_run_id,), timeout) for step_run_id in step_run_ids],
                   priority)


def _package(func: str, args: tuple, timeout: int | None) -> str:
    """A signed task package with the fields `async_task` gives it. Built without a
    model instance or a human-readable name each: a batch's chunk sends many at once, and
    a profile of the fan-out showed those two as most of its time."""
    from django_q.conf import Conf
    from django_q.signing import PickleSerializer, SignedPackage

    first = args[0]
    if func == TASK:
        name = f"step-{first}"
    elif func == CHUNK_TASK:
        name = f"steps-{first[0]}+{len(first) - 1}"
    else:  # a delayed doorbell's task (enqueue_later): its last name and its argument
        name = f"{func.rsplit('.', 1)[-1]}-{first}"
    task = {"id": uuid.uuid4().hex, "name": name, "func": func, "args": args,
            "save": False, "sync": False, "kwargs": {}, "started": timezone.now()}
    if timeout:
        task["timeout"] = timeout
    if Conf.ACK_FAILURES:
        task["ack_failure"] = True
    signer = _signer(Conf.SECRET_KEY, Conf.PREFIX)
    if signer is None:  # no key of django-q2's own: its way, which reads the settings'
        return SignedPackage.dumps(task)
    return signer.sign_object(task, serializer=PickleSerializer, compress=Conf.COMPRESSED)


@lru_cache(maxsize=4)
def _signer(key: str | None, salt: str):
    """The signer `SignedPackage.dumps` builds for each package (Django's own
    TimestampSigner, with django-q2's key and prefix as salt), built once per key: its
    construction read settings through Django's lazy settings object for every doorbell
    (docs/performance.md, "The API trigger's doorbell package and process columns").
    Signing itself is Django's, time stamp included, so a package is the one
    `SignedPackage.dumps` makes and `SignedPackage.loads` reads."""
    from django.core.signing import TimestampSigner

    return None if key is None else TimestampSigner(key=key, salt=salt)


def _send_packages(packages: list[str], priority: str) -> None:
    broker = _broker()
    if hasattr(broker, "enqueue_many"):  # store.queues, what settings wire
        broker.enqueue_many(packages, priority)
    else:  # another broker: one queue, no priorities
        for package in packages:
            broker.enqueue(package)


# -- chunk doorbells (a batch's chunk: docs/architecture.md, "Chunk doorbells") --------

CHUNK_TASK = "automation.tasks.steps_execute"


def bell_steps() -> int:
    """Steps per chunk doorbell: the continuation bound (ENTITYFLOW_CONTINUE_MAX_STEPS),
    so a chunk's task holds its worker no longer than a continued run may, and a chunk
    is several doorbells that both workers take in parallel."""
    return max(1, settings.ENTITYFLOW_CONTINUE_MAX_STEPS)


def enqueue_chunk(step_run_ids: list[int], *, timeout: int | None = None,
                  priority: str = NORMAL) -> None:
    """enqueue_many for a batch chunk's first steps: one doorbell per `bell_steps()`
    steps, whose task runs them one after another (the sweeper still finds any of them
    by its row if the doorbell is lost). A step with its own time limit keeps one
    doorbell each: the broker kills a task at its limit, which must be the step's."""
    size = bell_steps()
    if timeout or size == 1 or settings.Q_CLUSTER.get("sync"):
        enqueue_many(step_run_ids, timeout=timeout, priority=priority)
        return
    pieces = [step_run_ids[i:i + size] for i in range(0, len(step_run_ids), size)]
    if _queue_in_transaction():
        _send_pieces(pieces, priority)
        return
    transaction.on_commit(lambda: ring_pieces(pieces, priority=priority))


def ring_pieces(pieces: list[list[int]], *, priority: str = NORMAL) -> bool:
    """Send chunk doorbells now (after commit); False (logged) when the broker refused:
    the sweeper rings for their steps later."""
    try:
        _send_pieces(pieces, priority)
    except Exception:
        logger.warning("could not enqueue %d chunk doorbells; the sweeper will ring again",
                       len(pieces), exc_info=True)
        return False
    return True


def steps_rung(task: dict) -> list[int]:
    """The step run ids a doorbell (a decoded task package) rings for."""
    return list(task["args"][0]) if task["func"] == CHUNK_TASK else [task["args"][0]]


def higher_waiting(priority: str) -> bool:
    """Whether a doorbell of higher priority than `priority` waits in the broker, or was
    taken from it by a worker's pusher and has not begun (store.queues; a chunk
    doorbell's task then gives its worker back: engine.chunks). False when the broker
    cannot say or does not answer: the time bound still holds."""
    broker = _broker()
    if priority == Priority.HIGH or not hasattr(broker, "waiting_before"):
        return False
    try:
        return broker.waiting_before(priority)
    except Exception:
        logger.warning("could not read the higher-priority queues", exc_info=True)
        return False


def taken_begun(task: dict) -> None:
    """In the worker, just before a task begins (django-q2's `pre_execute`): a doorbell
    the dequeue marked as taken and not begun (its ack id a `str`, store.queues) has its
    marker removed. Fails soft: a marker left expires by itself within seconds."""
    ack_id = task.get("ack_id")
    if not isinstance(ack_id, str):
        return
    broker = _broker()
    if not hasattr(broker, "taken_begun"):
        return
    try:
        broker.taken_begun(ack_id)
    except Exception:
        logger.warning("could not remove a taken doorbell's marker", exc_info=True)


def _send_pieces(pieces: list[list[int]], priority: str) -> None:
    # the task re-rings what its bound leaves over on the same queue (engine.chunks)
    _send_packages([_package(CHUNK_TASK, (piece, priority), None) for piece in pieces if piece],
                   priority)


def enqueue_later(func: str, arg: int, due: datetime, *, priority: str = NORMAL,
                  timeout: int | None = None) -> None:
    """A delayed doorbell (store.delayed): the task `func(arg)` is taken by a worker once
    `due` has passed, within about a poll interval, and no worker waits for it meanwhile.

    Sent as enqueue_step sends: in the transaction with the ORM broker on our database,
    else once the transaction commits, failing soft (the rows that say what is due are
    the truth; the sweepers find what a lost doorbell would have done). A broker without
    delayed doorbells (another broker class) gets a step's doorbell now (its claim waits
    a short backoff, engine.executor) and leaves the rest to the sweepers. In synchronous
    mode nothing is sent: a step's doorbell runs it here (the same short backoff), and
    the rest is the sweepers' job, as no worker runs there."""
    if settings.Q_CLUSTER.get("sync"):
        if func == TASK:
            transaction.on_commit(lambda: _run_inline(arg))
        return
    if _queue_in_transaction():
        _send_later(func, arg, due, priority=priority, timeout=timeout)
        return

    def send() -> None:
        try:
            _send_later(func, arg, due, priority=priority, timeout=timeout)
        except Exception:  # the database is the truth: a sweeper finds it
            logger.warning("could not enqueue %s(%s) for %s; the sweeper will find it", func,
                           arg, due.isoformat(), exc_info=True)

    transaction.on_commit(send)


def _send_later(func: str, arg: int, due: datetime, *, priority: str,
                timeout: int | None) -> None:
    broker = _broker()
    package = _package(func, (arg,), timeout)
    if hasattr(broker, "enqueue_many_later"):  # store.queues, what settings wire
        broker.enqueue_many_later([package], priority, due)
    elif func == TASK:  # another broker: a step's claim waits a short backoff itself
        broker.enqueue(package)
    # else another broker without delayed doorbells: the sweepers find what is due


# Doorbells read to count the steps a queue rings for (queued_steps): a 100,000-entity
# batch queues 2,000 chunk doorbells.
PEEK = 2000


def queued_steps() -> int:
    """How many steps the queued doorbells ring for: a chunk doorbell rings for many
    (enqueue_chunk). Read from the first PEEK doorbells, and for a longer queue
    extrapolated from them; a package that is not a doorbell counts as one. A broker
    that cannot be read this way counts one step per doorbell."""
    from django_q.signing import SignedPackage

    broker = _broker()
    size = broker.queue_size() or 0
    if not size or not hasattr(broker, "peek"):
        return size
    packages = broker.peek(PEEK)
    steps = 0
    for package in packages:
        try:
            steps += len(steps_rung(SignedPackage.loads(package)))
        except Exception:  # not one of ours (another task, a foreign package)
            steps += 1
    return round(steps * size / len(packages)) if packages else size


def queue_broker():
    """The broker the doorbells go to, for other tasks that must reach the same workers."""
    return _broker()


@lru_cache(maxsize=1)
def _broker():
    """One broker per process: a Redis client per enqueue costs ~8x (docs/performance.md)."""
    from django_q.brokers import get_broker

    return get_broker()


_synchronous_runner = None


def set_synchronous_runner(runner) -> None:
    """`runner(step_run_id)` executes one step; registered by the engine at startup."""
    global _synchronous_runner
    _synchronous_runner = runner


def _run_inline(step_run_id: int) -> None:
    """Synchronous mode: a trampoline, not recursion, so a long chain of steps does not
    grow the stack."""
    pending = getattr(_local, "pending", None)
    if pending is not None:
        pending.append(step_run_id)
        return
    _local.pending = deque([step_run_id])
    try:
        while _local.pending:
            _synchronous_runner(_local.pending.popleft())
    finally:
        _local.pending = None
