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
    transaction.on_commit(lambda: ring(step_run_id, timeout=timeout, priority=priority))


def _queue_in_transaction() -> bool:
    from django_q.brokers.orm import ORM

    alias = settings.Q_CLUSTER.get("orm")
    if settings.Q_CLUSTER.get("sync") or not alias or not isinstance(_broker(), ORM):
        return False
    return alias == router.db_for_write(StepRun) and not transaction.get_autocommit(using=alias)


def ring(step_run_id: int, *, timeout: int | None = None, priority: str = NORMAL) -> bool:
    """Send one doorbell now; False (logged) when the broker would not take it. (In
    synchronous mode the step runs here, and its errors are not the broker's.)"""
    if settings.Q_CLUSTER.get("sync"):
        _run_inline(step_run_id)
        return True
    try:
        send_step(step_run_id, timeout=timeout, priority=priority)
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


def send_step(step_run_id: int, *, timeout: int | None = None, priority: str = NORMAL) -> None:
    if settings.Q_CLUSTER.get("sync"):
        _run_inline(step_run_id)
        return
    _send_many([step_run_id], timeout=timeout, priority=priority)


def _send_many(step_run_ids: list[int], *, timeout: int | None = None,
               priority: str = NORMAL) -> None:
    """Redis: one RPUSH for all of them; ORM broker: one multi-row INSERT; on the queue
    of `priority` (store.queues). The packages carry the fields `async_task` gives them,
    with the same signing; a batch's chunk sends 2,000 at once, so they are built without
    a model instance or a human-readable name each (a profile of the fan-out showed those
    two as most of its time)."""
    broker = _broker()
    now = timezone.now()
    packages = [_package(TASK, step_run_id, now, timeout) for step_run_id in step_run_ids]
    if hasattr(broker, "enqueue_many"):  # store.queues, what settings wire
        broker.enqueue_many(packages, priority)
    else:  # another broker: one queue, no priorities
        for package in packages:
            broker.enqueue(package)


def _package(func: str, arg: int, now, timeout: int | None) -> str:
    """A task as `async_task` packs it, with the same signing (name: `step-<id>` for a
    step's doorbell, else the task's last name and its argument)."""
    from django_q.conf import Conf
    from django_q.signing import SignedPackage

    name = f"step-{arg}" if func == TASK else f"{func.rsplit('.', 1)[-1]}-{arg}"
    task = {"id": uuid.uuid4().hex, "name": name, "func": func, "args": (arg,),
            "save": False, "sync": False, "kwargs": {}, "started": now}
    if timeout:
        task["timeout"] = timeout
    if Conf.ACK_FAILURES:
        task["ack_failure"] = True
    return SignedPackage.dumps(task)


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
    package = _package(func, arg, timezone.now(), timeout)
    if hasattr(broker, "enqueue_many_later"):  # store.queues, what settings wire
        broker.enqueue_many_later([package], priority, due)
    elif func == TASK:  # another broker: a step's claim waits a short backoff itself
        broker.enqueue(package)
    # else another broker without delayed doorbells: the sweepers find what is due


def queued_doorbells() -> int:
    """How many doorbells wait in the broker's queue (not yet taken by a worker)."""
    return _broker().queue_size() or 0


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
