"""Step types, each a class (like a model field in Django): the one place a step's
`type` string is mapped to what that type does.

`step_type("loop")` is the registered `LoopStep`; validation, the graph, the engine, the
dry run and the editor ask it rather than compare type names. A new type is one module
with a `StepType` subclass, registered here with `register`.
"""

from automation.definitions.steps.agent import AgentStep
from automation.definitions.steps.base import (
    BRANCH_KEYS,
    Step,
    StepPolicy,
    StepRuntime,
    StepType,
)
from automation.definitions.steps.condition import ConditionStep
from automation.definitions.steps.function import FunctionStep
from automation.definitions.steps.human import HumanStep
from automation.definitions.steps.loop import LoopStep
from automation.definitions.steps.outcome import Outcome
from automation.definitions.steps.parallel import ParallelStep
from automation.definitions.steps.process import ProcessStep
from automation.definitions.steps.wait import WaitStep
from automation.definitions.steps.wait_for_event import WaitForEventStep

__all__ = ["BRANCH_KEYS", "STEP_TYPES", "Outcome", "Step", "StepPolicy", "StepRuntime",
           "StepType", "UnknownStepTypeError", "find_step_type", "register", "step_type"]

STEP_TYPES: dict[str, StepType] = {}


class UnknownStepTypeError(LookupError):
    """A step type no module registered; validated definitions never name one."""


def register(cls: type[StepType]) -> type[StepType]:
    """Register a step type under its `name` (usable as a class decorator)."""
    if not cls.name or not cls.description:
        raise ValueError(f"{cls.__name__} needs a name and a description.")
    if cls.name in STEP_TYPES:
        raise ValueError(f"A step type named '{cls.name}' is already registered.")
    STEP_TYPES[cls.name] = cls()
    return cls


def step_type(name: str) -> StepType:
    kind = find_step_type(name)
    if kind is None:
        raise UnknownStepTypeError(
            f"Unknown step type {name!r}; registered: {', '.join(sorted(STEP_TYPES))}.")
    return kind


def find_step_type(name: object) -> StepType | None:
    """The registered type, or None for any other value (also a non-text one, as an
    invalid definition being edited may hold)."""
    return STEP_TYPES.get(name) if isinstance(name, str) else None


for _cls in (FunctionStep, ConditionStep, ParallelStep, LoopStep, HumanStep, AgentStep,
             WaitStep, WaitForEventStep, ProcessStep):
    register(_cls)
