"""The queue is a doorbell: it only says "step N may be ready". The step-run rows
decide whether anything runs (see executor.claim_step)."""

import logging
import threading
import uuid
from collections import deque
from datetime import timedelta
from functools import lru_cache

from django.conf import settings
from django.db import transaction
from django.utils import timezone

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
    from django.db import router

    from automation.models import StepRun

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


class InlineQueue(deque):
    """Cheap steps the current worker runs itself, already claimed by it (see
    `take_inline`); at most `budget` per task, so a long chain (a loop of transforms)
    still goes back through the queue now and then."""

    def __init__(self, budget: int):
        super().__init__()
        self.budget = budget

    def accept(self) -> bool:
        if self.budget <= 0:
            return False
        self.budget -= 1
        return True


class inline_steps:
    """Context in which cheap successor steps are collected for the current worker."""

    def __init__(self, budget: int):
        self.budget = budget

    def __enter__(self) -> InlineQueue:
        self.previous = getattr(_local, "inline", None)
        _local.inline = InlineQueue(self.budget)
        return _local.inline

    def __exit__(self, *exc) -> None:
        leftover = list(_local.inline)
        _local.inline = self.previous
        for step_run in leftover:  # never strand a step: hand back what was not run
            _release(step_run)


def take_inline(cheap: bool) -> dict | None:
    """Claim fields for a new step row the current worker will run itself, or None.

    The row is written already claimed (with a lease), in the transaction that records
    its predecessor: no claim query and no queue round trip, and if this worker dies
    before running it the lease runs out and the sweeper hands it to another worker.
    """
    inline = getattr(_local, "inline", None)
    if not cheap or inline is None or not _outermost_transaction() or not inline.accept():
        return None
    now = timezone.now()
    return {"status": "running", "claim": uuid.uuid4(), "attempt": 1, "started_at": now,
            "lease_expires_at": now + timedelta(seconds=settings.ENTITYFLOW_STEP_LEASE_SECONDS)}


def _outermost_transaction() -> bool:
    """Only a row whose transaction commits right away can be handed over (the outermost
    transaction, or a statement in autocommit mode, see one_statement); inside an
    enclosing transaction the hand-over would wait for a commit that may come too late."""
    from django.db import connections, router

    from automation.models import StepRun

    return len(connections[router.db_for_write(StepRun)].atomic_blocks) <= 1


def run_here(step_run) -> None:
    """After commit, hand the claimed row (see take_inline) to this worker's queue."""
    inline = _local.inline
    transaction.on_commit(lambda: inline.append(step_run))


def _release(step_run) -> None:
    """Give back a claim taken by take_inline and ring for the step instead."""
    from automation.models import StepRun

    try:
        StepRun.objects.filter(pk=step_run.pk, claim=step_run.claim,
                               status=StepRun.Status.RUNNING).update(
            status=StepRun.Status.PENDING, claim=None, lease_expires_at=None, started_at=None,
            attempt=step_run.attempt - 1)
    except Exception:  # the lease runs out and the sweeper takes it back
        logger.warning("could not release step run %s", step_run.pk, exc_info=True)
        return
    ring(step_run.pk)


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


@lru_cache(maxsize=1)
def _broker():
    """One broker per process: a Redis client per enqueue costs ~8x (docs/performance.md)."""
    from django_q.brokers import get_broker

    return get_broker()


def _run_inline(step_run_id: int) -> None:
    """Synchronous mode (unit tests, `run_process --sync`): a trampoline, not recursion,
    so a long chain of steps does not grow the stack."""
    from automation.tasks import step_execute

    pending = getattr(_local, "pending", None)
    if pending is not None:
        pending.append(step_run_id)
        return
    _local.pending = deque([step_run_id])
    try:
        while _local.pending:
            step_execute(_local.pending.popleft())
    finally:
        _local.pending = None
