"""The queue is a doorbell: it only says "step N may be ready". The step-run rows
decide whether anything runs (see executor.claim_step)."""

import threading
from collections import deque
from functools import lru_cache

from django.conf import settings
from django.db import transaction

TASK = "automation.tasks.step_execute"
_local = threading.local()


def enqueue_step(step_run_id: int, *, timeout: int | None = None, cheap: bool = False) -> None:
    """Ring the doorbell once the current transaction commits (never for a rollback).

    Inside a worker that just finished a step, a cheap local step (condition, transform)
    is handed back to that worker instead (see executor.execute_step): no queue round
    trip, and its predecessor's result is already committed when it starts.
    """
    inline = getattr(_local, "inline", None)
    if cheap and inline is not None and inline.accept():
        transaction.on_commit(lambda: inline.append(step_run_id))
        return
    transaction.on_commit(lambda: send_step(step_run_id, timeout=timeout))


class InlineQueue(deque):
    """Cheap steps the current worker runs itself; at most `budget` per task, so a long
    chain (a loop of transforms) still goes back through the queue now and then."""

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
        for step_run_id in leftover:  # never strand a step: ring for what was not run
            send_step(step_run_id)


def send_step(step_run_id: int, *, timeout: int | None = None) -> None:
    if settings.Q_CLUSTER.get("sync"):
        _run_inline(step_run_id)
        return
    from django_q.tasks import async_task

    options = {"broker": _broker(), "save": False, "sync": False}
    if timeout:
        options["timeout"] = timeout
    async_task(TASK, step_run_id, **options)


@lru_cache(maxsize=1)
def _broker():
    """One broker per process: opening a Redis client per enqueue costs ~8x (DESIGN §8)."""
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
