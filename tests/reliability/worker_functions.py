"""Functions the reliability tests' steps call, in this process and in real workers
(ENTITYFLOW_FUNCTION_MODULES): each records one line per execution."""

import os
import threading
import time

from automation.functions import function

CALLS: list[tuple[str, str, str]] = []  # (run id, step id, idempotency key), in this process
MEETING: dict[str, threading.Barrier] = {}  # per run: sibling branches wait for each other
_lock = threading.Lock()


class WorkerDied(BaseException):  # noqa: N818  (it stands for a process that vanished)
    """Raised by `reliability.die_after_effect` once: like a SIGKILL right after the side
    effect, nothing below the function gets to record an outcome."""


def _record(ctx) -> None:
    with _lock:
        CALLS.append((ctx.run_id, ctx.step_id, ctx.idempotency_key))
    path = os.environ.get("ENTITYFLOW_RELIABILITY_EFFECTS")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{ctx.idempotency_key} {os.getpid()}\n".encode())
        finally:
            os.close(fd)


@function("reliability.count")
def count(ctx):
    _record(ctx)
    time.sleep(float((ctx.params or {}).get("seconds", 0)))
    return {"step": ctx.step_id}


@function("reliability.meet")
def meet(ctx):
    """Waits until its sibling branch is running too, so both finish at the same moment."""
    _record(ctx)
    barrier = MEETING.get(ctx.run_id)
    if barrier is not None:
        barrier.wait(10)
    return {"step": ctx.step_id}


@function("reliability.die_after_effect")
def die_after_effect(ctx):
    _record(ctx)
    if ctx.attempt == 1:
        raise WorkerDied()
    return {"step": ctx.step_id, "attempt": ctx.attempt}


@function("reliability.effect_then_sleep")
def effect_then_sleep(ctx):
    """The side effect first, then a long pause in which the test kills the worker."""
    _record(ctx)
    time.sleep(float((ctx.params or {}).get("seconds", 30)))
    return {"step": ctx.step_id}
