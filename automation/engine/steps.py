"""Running one step: the engine's side of the step types (automation.definitions.steps).

`EngineRuntime` gives a step type what it may not import itself (the function registry,
the connectors); `run_step` turns whatever a step raises into a failed `Outcome`. No
database transaction is held here: function steps may call outside systems and take
seconds."""

import json
import traceback
from collections.abc import Callable
from typing import Any

from automation.definitions import Step
from automation.definitions.steps import Outcome, step_type
from automation.engine.agents import Journal, run_agent
from automation.exceptions import AutomationError, StepDeferredError, StepFailedError
from automation.functions import StepContext, resolve_function
from automation.functions.registry import validate_params
from automation.functions.templating import evaluate_tree
from entities.exceptions import ExpressionError
from integrations.exceptions import ConnectorError


def _resolve(step: Step, rows: dict | None):
    """The function and its params, checked against its schema (validate_params).
    `rows`: the task's functions looked up so far (engine.context.Execution, a chunk's
    group: engine.chunks), so a chain of inline steps calling `transform`, or a chunk's
    50 steps, read the Function table and check the same params once, not once per
    step (the check builds a schema validator: docs/performance.md); None outside a
    worker task."""
    function = step.raw["function"]
    if rows is None or isinstance(function, dict):  # inline: the definition has it all
        spec, params, connection = resolve_function(function, step.config)
        validate_params(spec, params)
        return spec, params, connection
    key = (function, json.dumps(step.config.get("params"), sort_keys=True, default=str))
    if key not in rows:
        spec, params, connection = resolve_function(function, step.config)
        validate_params(spec, params)  # params that do not fit are not kept: asked again
        rows[key] = spec, params, connection
    spec, params, connection = rows[key]
    return spec, dict(params), connection


# Starts a sub-process's run for a `process` step: the run-start service, registered at
# startup (automation.apps), since the engine may not import the services above it.
# (parent step run, its claim's idempotency key, input, entity id or None) -> child dict
_process_starter: Callable[..., dict] | None = None


def set_process_starter(start: Callable[..., dict]) -> None:
    global _process_starter
    _process_starter = start


class EngineRuntime:
    """A `StepRuntime` around the `StepContext` that function handlers receive unchanged."""

    def __init__(self, ctx: StepContext, function_rows: dict | None,
                 journal: Journal | None = None) -> None:
        self.ctx = ctx
        self.function_rows = function_rows
        self.journal = journal

    @property
    def input(self) -> Any:
        return self.ctx.input

    @property
    def scope(self) -> dict:
        return self.ctx.scope

    @property
    def logs(self) -> list:
        return self.ctx.logs

    def log(self, message: str, **data: Any) -> None:
        self.ctx.log(message, **data)

    def call_function(self, step: Step) -> Any:
        ctx = self.ctx
        spec, params, connection = _resolve(step, self.function_rows)
        ctx.params, ctx.connection, ctx.step_config = params, connection, step.config
        if "input" in step.config:
            ctx.input = evaluate_tree(step.config["input"], ctx.scope)
        return spec.handler(ctx)

    def run_agent(self, step: Step) -> Outcome:
        return run_agent(step, self.ctx, self.journal)

    def start_process(self, step: Step, *, input: Any, entity: Any) -> dict:
        if self.journal is None or _process_starter is None:
            raise AutomationError("A sub-process can only be started by a worker.")
        return _process_starter(self.journal.claim.step_run, key=self.ctx.idempotency_key,
                                input=input, entity=entity)


def run_step(step: Step, ctx: StepContext, *, function_rows: dict | None = None,
             journal: Journal | None = None) -> Outcome:
    """`journal`: where a step that records as it goes (an agent) writes; None in a
    dry run or a test outside a worker."""
    kind = step_type(step.type)
    try:
        return kind.execute(step, EngineRuntime(ctx, function_rows, journal))
    except ExpressionError as exc:
        return Outcome.failed(exc.message, code=exc.code, logs=ctx.logs)
    except StepDeferredError as exc:  # not yet (a rate limit): neither failed nor an attempt
        return Outcome("deferred", error={"message": exc.message, "code": exc.code},
                       retry_after=exc.seconds)
    except StepFailedError as exc:
        return Outcome.failed(exc.message, code=exc.code, retryable=exc.retryable, logs=ctx.logs)
    except AutomationError as exc:
        return Outcome.failed(exc.message, code=exc.code, logs=ctx.logs)
    except Exception as exc:  # a user function's bug must fail the step, not the worker
        if isinstance(exc, ConnectorError):
            return Outcome.failed(
                getattr(exc, "message", None) or str(exc),
                code=getattr(exc, "code", "connector_error"),
                retryable=getattr(exc, "retryable", False),
                retry_after=getattr(exc, "retry_after", None), logs=ctx.logs,
            )
        return _crashed(exc, ctx)


def _crashed(exc: Exception, ctx: StepContext) -> Outcome:
    """A bug in the step's own code: its last frames are logged, the step may be retried."""
    summary = traceback.format_exception_only(type(exc), exc)[-1].strip()
    frames = traceback.extract_tb(exc.__traceback__)[-3:]
    ctx.log("traceback (last frames)",
            frames=[f"{f.filename}:{f.lineno} in {f.name}" for f in frames])
    return Outcome.failed(summary, code="function_error", retryable=True, logs=ctx.logs)
