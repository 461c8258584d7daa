import time

import pytest

from automation.functions import function
from automation.models import ApiProcess
from automation.services.processes import process_save

CALLS: list[tuple[str, object]] = []
FLAKY: dict[str, int] = {}


@function("test.record")
def record(ctx):
    CALLS.append((ctx.step_id, ctx.input))
    return {"step": ctx.step_id, "seen": ctx.input, **(ctx.params or {})}


@function("test.flaky")
def flaky(ctx):
    """Fails the first `failures` calls (per key; a retry keeps its run's key), then succeeds."""
    key = ctx.params.get("key") or f"{ctx.effect_origin or ctx.run_id}:{ctx.step_id}"  # per chain
    FLAKY[key] = FLAKY.get(key, 0) + 1
    CALLS.append((ctx.step_id, FLAKY[key]))
    if FLAKY[key] <= ctx.params.get("failures", 0):
        raise RuntimeError(f"flaky failure {FLAKY[key]}")
    return {"calls": FLAKY[key]}


@function("test.pure", cheap=True)
def pure(ctx):
    """A cheap function (no outside effect: a chunk may record it with others); counts
    its calls here and, on the entity `slow` names, sleeps `seconds` (a chunk's bound)."""
    params, reference = ctx.params or {}, ctx.scope["entity"]["reference"]
    CALLS.append((ctx.step_id, ctx.run_id))
    if params.get("slow") == reference:
        time.sleep(float(params.get("seconds", 0)))
    return {"ref": reference, "attempt": ctx.attempt}


@function("test.boom")
def boom(ctx):
    CALLS.append((ctx.step_id, "boom"))
    raise RuntimeError("the warehouse API said no")


@pytest.fixture(autouse=True)
def _reset_calls(settings):
    CALLS.clear()
    FLAKY.clear()
    settings.ENTITYFLOW_RETRY_BASE_SECONDS = 0.01
    settings.ENTITYFLOW_RETRY_MAX_SECONDS = 0.05
    yield


@pytest.fixture
def calls():
    return CALLS


@pytest.fixture
def make_process():
    counter = {"n": 0}

    def make(steps, triggers=None, slug=None, **kwargs) -> ApiProcess:
        counter["n"] += 1
        return process_save(slug=slug or f"proc-{counter['n']}", name=kwargs.pop("name", "Test process"),
                            definition={"steps": steps, "triggers": triggers or []}, **kwargs)

    return make
