"""An agent step runs the stored agent named by `config.agentRole` as a tool-calling loop
(docs/user-guide/agents.md): the model is asked, the stored functions it calls run as
child steps, and its final JSON answer, checked against the agent's output schema, is
the step's output."""

from collections.abc import Callable

from automation.definitions.errors import DefinitionErrors, check_int
from automation.definitions.steps.base import Step, StepRuntime, StepType, raw_config
from automation.definitions.steps.outcome import Outcome

SUMMARY_LENGTH = 120
# step config key -> (lowest, highest); each overrides the agent's own limit
LIMITS = {"maxIterations": (1, 100), "maxToolCalls": (0, 1000),
          "maxTokens": (1, 10_000_000), "timeoutSeconds": (1, 86_400)}


class AgentStep(StepType):
    name = "agent"
    description = "Run the stored agent named by config.agentRole: a model calling tools."
    hides_after = frozenset({"result", "steps"})

    def validate(self, raw: dict, path: str, errors: DefinitionErrors, *,
                 function_exists: Callable[[str], bool]) -> None:
        config = raw_config(raw)
        key = config.get("agentRole")
        if not isinstance(key, str) or not key:
            errors.add(f"{path}.config.agentRole",
                       "An agent step names its agent in config.agentRole.")
        tools = config.get("tools")
        if "tools" in config and (not isinstance(tools, list)
                                  or not all(isinstance(t, str) and t for t in tools)):
            errors.add(f"{path}.config.tools", "tools is a list of stored function names.")
        elif isinstance(tools, list):
            for index, name in enumerate(tools):
                if not function_exists(name):
                    errors.add(f"{path}.config.tools[{index}]", f"Unknown function '{name}'.")
        for key, (low, high) in LIMITS.items():
            check_int(config, key, path, errors, low, high)
        check_int(config, "retries", path, errors, 0, 20)
        check_int(config, "timeout", path, errors, 1, 86_400_000)

    def validate_references(self, raw: dict, path: str, errors: DefinitionErrors,
                            stored_exists: Callable[[str, str], bool]) -> None:
        key = raw_config(raw).get("agentRole")
        if isinstance(key, str) and key and not stored_exists("Agent", key):
            errors.add(f"{path}.config.agentRole", f"Unknown agent '{key}'.")

    def execute(self, step: Step, runtime: StepRuntime) -> Outcome:
        return runtime.run_agent(step)

    def max_attempts(self, step: Step) -> int:
        return int(step.config.get("retries", 0)) + 1

    def summary(self, raw: dict) -> str:
        config = raw_config(raw)
        tools = config.get("tools")
        listed = isinstance(tools, list) and tools
        extra = f" · tools {', '.join(map(str, tools))}" if listed else ""
        return f"{config.get('agentRole') or '?'}{extra}"[:SUMMARY_LENGTH]
