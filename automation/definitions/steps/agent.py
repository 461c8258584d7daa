"""An agent step asks a language model, instructed by `config.agentRole`, with the
step's input (and optional tools and model); its output is the model's JSON answer."""

from collections.abc import Callable

from automation.definitions.errors import DefinitionErrors
from automation.definitions.steps.base import Step, StepRuntime, StepType, raw_config
from automation.definitions.steps.outcome import Outcome

SUMMARY_LENGTH = 120


class AgentStep(StepType):
    name = "agent"
    description = "Ask a language model, instructed by config.agentRole, with the step's input."
    hides_after = frozenset({"result", "steps"})

    def validate(self, raw: dict, path: str, errors: DefinitionErrors, *,
                 function_exists: Callable[[str], bool]) -> None:
        if not isinstance(raw.get("config", {}).get("agentRole"), str):
            errors.add(f"{path}.config.agentRole",
                       "An agent step needs config.agentRole (its instructions).")

    def execute(self, step: Step, runtime: StepRuntime) -> Outcome:
        output = runtime.call_agent(step.config, runtime.input)
        return Outcome("completed", output=output, logs=runtime.logs)

    def summary(self, raw: dict) -> str:
        return str(raw_config(raw).get("agentRole") or "")[:SUMMARY_LENGTH]
