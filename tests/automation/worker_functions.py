"""Functions the real worker process imports (ENTITYFLOW_FUNCTION_MODULES): each
appends one line to a side-effect file, so a test can count effects across processes."""

import os
import time

from automation.functions import function


def _effect(line: str) -> None:
    with open(os.environ["ENTITYFLOW_TEST_EFFECTS"], "a") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


@function("worker.effect")
def effect(ctx):
    _effect(f"{ctx.run_id}:{ctx.step_id}")
    return {"step": ctx.step_id}


@function("worker.slow")
def slow(ctx):
    time.sleep(float(ctx.params.get("seconds", 2)))
    _effect(f"{ctx.run_id}:{ctx.step_id}")
    return {"step": ctx.step_id, "slept": ctx.params.get("seconds", 2)}


@function("worker.fail")
def fail(ctx):
    raise RuntimeError(str(ctx.params.get("message", "failed on purpose")))


@function("worker.gate")
def gate(ctx):
    """Waits until the file ENTITYFLOW_TEST_GATE exists (at most 120 s), then returns
    its input: a test decides when runs may end."""
    path = os.environ["ENTITYFLOW_TEST_GATE"]
    deadline = time.monotonic() + 120
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    return {"n": (ctx.input or {}).get("n")}


@function("worker.ledgered")
def ledgered(ctx):
    """An external effect made through the idempotency ledger (one row per effect)."""
    from automation.functions.ledger import once

    def call():
        _effect(f"{ctx.run_id}:{ctx.step_id}:{ctx.scope_key}")
        return {"item": ctx.input}

    return once(ctx, "worker.ledgered", {"item": ctx.input}, call)


@function("worker.pure", cheap=True)
def pure(ctx):
    """Cheap (no outside effect: a chunk records it with others) and slow enough
    (`seconds`) for a test to kill the worker between a chunk's claim and its record."""
    time.sleep(float(ctx.params.get("seconds", 0)))
    return {"ref": ctx.scope["entity"]["reference"]}
