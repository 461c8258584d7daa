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
                 priority: str = NORMAL) -> None:
    """Ring the doorbell once the current transaction commits (never for a rollback),
    on the queue of the step's priority (store.queues).

    Ringing fails soft: what was committed stays committed, and a step whose doorbell
    was lost (broker down) is found and rung again by the sweeper.

    With the ORM broker on our own database the doorbell is a row written in the same
    transaction instead: no worker can see it before the step's row, a rollback takes
    it back, and the commit cannot lose it (one write transaction fewer per step).
    """
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
    from django_q.conf import Conf
    from django_q.signing import SignedPackage

    broker = _broker()
    packages, now = [], timezone.now()
    for step_run_id in step_run_ids:
        task = {"id": uuid.uuid4().hex, "name": f"step-{step_run_id}", "func": TASK,
                "args": (step_run_id,), "save": False, "sync": False, "kwargs": {},
                "started": now}
        if timeout:
            task["timeout"] = timeout
        if Conf.ACK_FAILURES:
            task["ack_failure"] = True
        packages.append(SignedPackage.dumps(task))
    if hasattr(broker, "enqueue_many"):  # store.queues, what settings wire
        broker.enqueue_many(packages, priority)
    else:  # another broker: one queue, no priorities
        for package in packages:
            broker.enqueue(package)


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
