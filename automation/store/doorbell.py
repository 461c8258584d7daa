"""The queue is a doorbell: it only says "step N may be ready". The step-run rows
decide whether anything runs (the store's claim); docs/architecture.md, "Durability".

A doorbell is a django-q2 task naming `automation.tasks.step_execute` by its dotted
path. In synchronous mode (unit tests, `run_process --sync`) a ring runs the step right
here instead, through the runner the worker side registers (`set_synchronous_runner`):
the store never imports the engine."""

import logging
import threading
from collections import deque
from functools import lru_cache

from django.conf import settings
from django.db import router, transaction
from django.utils import timezone

from automation.models import StepRun

logger = logging.getLogger(__name__)
TASK = "automation.tasks.step_execute"
_local = threading.local()


def enqueue_step(step_run_id: int, *, timeout: int | None = None) -> None:
    """Ring the doorbell once the current transaction commits (never for a rollback).

    Ringing fails soft: what was committed stays committed, and a step whose doorbell
    was lost (broker down) is found and rung again by the sweeper.

    With the ORM broker on our own database the doorbell is a row written in the same
    transaction instead: no worker can see it before the step's row, a rollback takes
    it back, and the commit cannot lose it (one write transaction fewer per step).
    """
    if _queue_in_transaction():
        send_step(step_run_id, timeout=timeout)
        return
    transaction.on_commit(lambda: ring(step_run_id, timeout=timeout))


def _queue_in_transaction() -> bool:
    from django_q.brokers.orm import ORM

    alias = settings.Q_CLUSTER.get("orm")
    if settings.Q_CLUSTER.get("sync") or not alias or not isinstance(_broker(), ORM):
        return False
    return alias == router.db_for_write(StepRun) and not transaction.get_autocommit(using=alias)


def ring(step_run_id: int, *, timeout: int | None = None) -> bool:
    """Send one doorbell now; False (logged) when the broker would not take it. (In
    synchronous mode the step runs here, and its errors are not the broker's.)"""
    if settings.Q_CLUSTER.get("sync"):
        _run_inline(step_run_id)
        return True
    try:
        send_step(step_run_id, timeout=timeout)
    except Exception:  # the database is the truth: the sweeper rings again later
        logger.warning("could not enqueue step run %s; the sweeper will ring again",
                       step_run_id, exc_info=True)
        return False
    return True


def enqueue_many(step_run_ids: list[int], *, timeout: int | None = None) -> None:
    """enqueue_step for many: in the transaction with the ORM broker, else after commit."""
    if _queue_in_transaction():
        _send_many(step_run_ids, timeout=timeout)
        return
    transaction.on_commit(lambda: ring_many(step_run_ids, timeout=timeout))


def ring_many(step_run_ids: list[int], *, timeout: int | None = None) -> None:
    """One broker round trip for many doorbells where the broker allows it (after commit)."""
    if settings.Q_CLUSTER.get("sync") or len(step_run_ids) < 2:
        for step_run_id in step_run_ids:
            ring(step_run_id, timeout=timeout)
        return
    try:
        _send_many(step_run_ids, timeout=timeout)
    except Exception:
        logger.warning("could not enqueue %d step runs; the sweeper will ring again",
                       len(step_run_ids), exc_info=True)


def send_step(step_run_id: int, *, timeout: int | None = None) -> None:
    if settings.Q_CLUSTER.get("sync"):
        _run_inline(step_run_id)
        return
    from django_q.tasks import async_task

    options = {"broker": _broker(), "save": False, "sync": False}
    if timeout:
        options["timeout"] = timeout
    async_task(TASK, step_run_id, **options)


def _send_many(step_run_ids: list[int], *, timeout: int | None = None) -> None:
    """Redis: one RPUSH for all of them; ORM broker: one bulk INSERT. The packages are
    the ones `async_task` builds (same fields, same signing)."""
    from django_q.brokers import orm, redis_broker
    from django_q.conf import Conf
    from django_q.humanhash import uuid as human_uuid
    from django_q.signing import SignedPackage

    broker = _broker()
    packages = []
    for step_run_id in step_run_ids:
        name, task_id = human_uuid()
        task = {"id": task_id, "name": name, "func": TASK, "args": (step_run_id,),
                "save": False, "sync": False, "kwargs": {}, "started": timezone.now()}
        if timeout:
            task["timeout"] = timeout
        if Conf.ACK_FAILURES:
            task["ack_failure"] = True
        packages.append(SignedPackage.dumps(task))
    if isinstance(broker, redis_broker.Redis):
        broker.connection.rpush(broker.list_key, *packages)
    elif isinstance(broker, orm.ORM):
        now, key = timezone.now(), broker.list_key or Conf.CLUSTER_NAME
        orm.ORM.get_connection().bulk_create(
            [orm.OrmQ(key=key, payload=package, lock=now) for package in packages])
    else:
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
