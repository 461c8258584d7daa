"""Running one step of each type. No database transaction is held here: function
steps may call outside systems and take seconds."""

import json
import logging
import threading
import traceback
from contextlib import contextmanager
from datetime import timedelta

from django.utils import timezone

from automation.definitions import Step
from automation.definitions.steps.outcome import Outcome
from automation.exceptions import AutomationError, StepFailedError
from automation.functions import StepContext, resolve_function
from automation.functions.registry import validate_params
from automation.functions.templating import evaluate_tree
from entities.exceptions import ExpressionError
from entities.expressions import evaluate, evaluate_bool

logger = logging.getLogger(__name__)
_memo = threading.local()


@contextmanager
def function_rows():
    """Within one task, look each named function up once: a chain of inline steps calling
    `transform` would otherwise read the Function table once per step."""
    previous = getattr(_memo, "rows", None)
    _memo.rows = {}
    try:
        yield
    finally:
        _memo.rows = previous


def _resolve(step: Step):
    rows = getattr(_memo, "rows", None)
    if rows is None:
        return resolve_function(step.raw["function"], step.config)
    key = (step.raw["function"], json.dumps(step.config.get("params"), sort_keys=True, default=str))
    if key not in rows:
        rows[key] = resolve_function(step.raw["function"], step.config)
    spec, params, connection = rows[key]
    return spec, dict(params), connection


def run_step(step: Step, ctx: StepContext) -> Outcome:
    handler = HANDLERS[step.type]
    try:
        return handler(step, ctx)
    except ExpressionError as exc:
        return Outcome.failed(exc.message, code=exc.code, logs=ctx.logs)
    except StepFailedError as exc:
        return Outcome.failed(exc.message, code=exc.code, retryable=exc.retryable, logs=ctx.logs)
    except AutomationError as exc:
        return Outcome.failed(exc.message, code=exc.code, logs=ctx.logs)
    except Exception as exc:  # a user function's bug must fail the step, not the worker
        if _is_connector_error(exc):
            return Outcome.failed(
                getattr(exc, "message", None) or str(exc), code=getattr(exc, "code", "connector_error"),
                retryable=getattr(exc, "retryable", False),
                retry_after=getattr(exc, "retry_after", None), logs=ctx.logs,
            )
        summary = traceback.format_exception_only(type(exc), exc)[-1].strip()
        frames = traceback.extract_tb(exc.__traceback__)[-3:]
        ctx.log("traceback (last frames)", frames=[f"{f.filename}:{f.lineno} in {f.name}" for f in frames])
        return Outcome.failed(summary, code="function_error", retryable=True, logs=ctx.logs)


def _is_connector_error(exc: Exception) -> bool:
    from integrations.exceptions import ConnectorError

    return isinstance(exc, ConnectorError)


def run_function(step: Step, ctx: StepContext) -> Outcome:
    spec, params, connection = _resolve(step)
    validate_params(spec, params)
    ctx.params, ctx.connection = params, connection
    if "input" in step.config:
        ctx.input = evaluate_tree(step.config["input"], ctx.scope)
    output = spec.handler(ctx)
    return Outcome("completed", output=output, logs=ctx.logs)


def run_condition(step: Step, ctx: StepContext) -> Outcome:
    value = evaluate_bool(step.raw["condition"], ctx.scope)
    target = step.next if value else ([step.config["else"]] if step.config.get("else") else [])
    ctx.log(f"{step.raw['condition']} → {str(value).lower()}")
    return Outcome("completed", output=ctx.input, targets=target, logs=ctx.logs,
                   state={"value": value})


def run_parallel(step: Step, ctx: StepContext) -> Outcome:
    return Outcome("completed", output=ctx.input, logs=ctx.logs)


def run_loop(step: Step, ctx: StepContext) -> Outcome:
    items = evaluate(step.config["items"], ctx.scope)
    if not isinstance(items, list):
        raise StepFailedError(f"config.items must give a list, got {type(items).__name__}.",
                              code="loop_items_not_list", retryable=False)
    limit = step.config.get("maxIterations", 1000)
    state = {"items": items[:limit], "results": [], "total": len(items), "truncated": len(items) > limit}
    if state["truncated"]:
        ctx.log(f"stopped at {limit} of {len(items)} items (maxIterations {limit})")
    return Outcome("loop", logs=ctx.logs, state=state)


def run_human(step: Step, ctx: StepContext) -> Outcome:
    config = step.config
    timeout_ms = config.get("timeout")
    state = {
        "approvers": config.get("approvers") or config.get("reviewers") or [],
        "requiredApprovals": config.get("requiredApprovals", 1),
        "deadline": (timezone.now() + timedelta(milliseconds=timeout_ms)).isoformat() if timeout_ms else None,
    }
    ctx.log(f"waiting for {state['requiredApprovals']} approval(s) from {', '.join(state['approvers'])}")
    return Outcome("waiting", logs=ctx.logs, state=state)


def run_agent(step: Step, ctx: StepContext) -> Outcome:
    from automation.functions.connectors import call_connector

    config = step.config
    params = {"system": config["agentRole"], "input": ctx.input, "tools": config.get("tools", []),
              "model": config.get("model")}
    output = call_connector(ctx, provider="openai", action="chat_json",
                            connection_name=config.get("connection"), params=params)
    return Outcome("completed", output=output, logs=ctx.logs)


HANDLERS = {"function": run_function, "condition": run_condition, "parallel": run_parallel,
            "loop": run_loop, "human": run_human, "agent": run_agent}
