"""A condition step evaluates an expression and goes on to `next` when it is true, to
`config.else` (or nowhere) when it is false."""

from collections.abc import Callable

from automation.definitions.errors import DefinitionErrors, check_expression
from automation.definitions.steps.base import DryTarget, Step, StepRuntime, StepType
from automation.definitions.steps.outcome import Outcome
from entities.exceptions import ExpressionError
from entities.expressions import evaluate_bool, expression_variables


class ConditionStep(StepType):
    name = "condition"
    description = "Go on to next when an expression is true, to config.else when it is false."

    def validate(self, raw: dict, path: str, errors: DefinitionErrors, *,
                 function_exists: Callable[[str], bool]) -> None:
        check_expression(raw.get("condition"), f"{path}.condition", errors)
        if not raw.get("next") and not raw.get("config", {}).get("else"):
            errors.add(f"{path}.next", "A condition needs next (when true) or config.else.")

    def execute(self, step: Step, runtime: StepRuntime) -> Outcome:
        value = evaluate_bool(step.raw["condition"], runtime.scope)
        targets = step.next if value else _orelse(step)
        runtime.log(f"{step.raw['condition']} → {str(value).lower()}")
        return Outcome("completed", output=runtime.input, targets=targets, logs=runtime.logs,
                       state={"value": value})

    def is_cheap(self, step: Step, action_is_cheap: Callable[[str], bool]) -> bool:
        return True

    def dry_run(self, step: Step, entry: dict, scope: dict, unknown: frozenset) -> list[DryTarget]:
        """Evaluated for real when every name it reads is known; else both ways are maybe."""
        source = step.raw["condition"]
        entry.update({"condition": source, "value": None})
        either = [(target, False) for target in [*step.next, *_orelse(step)]]
        try:
            if expression_variables(source) & unknown:
                entry["evaluation"] = "unknown"
                return either
            value = evaluate_bool(source, scope)
        except ExpressionError as exc:
            entry.update({"evaluation": "error", "error": exc.message})
            return either
        entry.update({"value": value, "evaluation": "true" if value else "false"})
        return [(target, True) for target in (step.next if value else _orelse(step))]

    def summary(self, raw: dict) -> str:
        return str(raw.get("condition") or "")


def _orelse(step: Step) -> list[str]:
    return [step.config["else"]] if step.config.get("else") else []
