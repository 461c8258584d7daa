"""The Python function the e2e bench's process calls (ENTITYFLOW_FUNCTION_MODULES in
every bench process): a plain function registered in code, not marked cheap, so each
step is a step like any other a user writes."""

from automation.functions import function


@function("bench.step", schema={"type": "object"})
def step(ctx):
    return {"step": ctx.step_id, "i": (ctx.input or {}).get("i")}
