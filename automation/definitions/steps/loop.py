"""A loop step runs its body (the steps from its `next` up to the loop again) once per
item of `config.items`, one item after the other, then goes on to `config.then`."""

from collections.abc import Callable

from automation.definitions.errors import DefinitionErrors, check_expression, check_int
from automation.definitions.steps.base import DryTarget, Step, StepRuntime, StepType, raw_config
from automation.definitions.steps.outcome import Outcome
from automation.exceptions import StepFailedError
from entities.exceptions import ExpressionError
from entities.expressions import evaluate, expression_variables

DEFAULT_MAX_ITERATIONS = 1000


class LoopStep(StepType):
    name = "loop"
    description = "Run the body from next once per item of config.items, then go on to config.then."
    has_body = True
    hides_after = frozenset({"result", "steps", "item", "index"})

    def validate(self, raw: dict, path: str, errors: DefinitionErrors, *,
                 function_exists: Callable[[str], bool]) -> None:
        config = raw.get("config", {})
        check_expression(config.get("items"), f"{path}.config.items", errors)
        check_int(config, "maxIterations", path, errors, 1, 10_000)
        if not raw.get("next"):
            errors.add(f"{path}.next", "A loop needs next: the first step of its body.")

    def execute(self, step: Step, runtime: StepRuntime) -> Outcome:
        items = evaluate(step.config["items"], runtime.scope)
        if not isinstance(items, list):
            raise StepFailedError(f"config.items must give a list, got {type(items).__name__}.",
                                  code="loop_items_not_list", retryable=False)
        limit = step.config.get("maxIterations", DEFAULT_MAX_ITERATIONS)
        state = {"items": items[:limit], "results": [], "total": len(items),
                 "truncated": len(items) > limit}
        if state["truncated"]:
            runtime.log(f"stopped at {limit} of {len(items)} items (maxIterations {limit})")
        return Outcome("loop", logs=runtime.logs, state=state)

    def dry_run(self, step: Step, entry: dict, scope: dict, unknown: frozenset) -> list[DryTarget]:
        """The body is certain only when the items are known and there are some."""
        source = step.config.get("items", "")
        then = [step.config["then"]] if isinstance(step.config.get("then"), str) else []
        entry["items"] = None
        try:
            if not expression_variables(source) & unknown:
                items = evaluate(source, scope)
                entry["items"] = len(items) if isinstance(items, list) else None
        except ExpressionError as exc:
            entry["error"] = exc.message
        if entry["items"] == 0:
            targets = [(target, True) for target in then]
        else:
            body_certain = bool(entry["items"])
            targets = [(t, body_certain) for t in step.next] + [(t, True) for t in then]
        return targets + self.maybe_targets(step)

    def summary(self, raw: dict) -> str:
        return f"for each in {raw_config(raw).get('items') or '?'}"
