"""A parallel step passes its input on to every step in `next` at once; the branches
meet again at a join (a step with several predecessors)."""

from collections.abc import Callable

from automation.definitions.steps.base import Step, StepRuntime, StepType
from automation.definitions.steps.outcome import Outcome


class ParallelStep(StepType):
    name = "parallel"
    description = "Start every step in next at once, each with this step's input."

    def execute(self, step: Step, runtime: StepRuntime) -> Outcome:
        return Outcome("completed", output=runtime.input, logs=runtime.logs)

    def is_cheap(self, step: Step, action_is_cheap: Callable[[str], bool]) -> bool:
        return True
