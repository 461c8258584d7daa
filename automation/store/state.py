"""What the engine remembers about one step run between its writes (`StepRun.state`).

Typed here, stored as a flat JSON object: the keys are the ones the column has always
held, so rows written before stay readable and the queries on them (`state__terminal`,
`state__stopped_by`) keep working. None, and flags that are not set, are not written.
"""

from dataclasses import dataclass, fields
from typing import Any


@dataclass
class StepState:
    # Every step run
    terminal: bool = False  # a branch ended here (its output is part of the run's result)
    handled: bool = False  # failed, and config.onError took over: the run goes on
    stopped_status: str | None = None  # what it was when a cancel or a failure stopped it
    stopped_by: str | None = None  # "cancel" | "failure"
    # A join (a step reached from several branches) while it waits for them
    join: bool = False
    arrivals: dict[str, Any] | None = None  # predecessor step id -> its result
    # A loop
    items: list | None = None
    results: list | None = None
    total: int | None = None
    truncated: bool | None = None
    current: int | None = None
    # A human step
    approvers: list[str] | None = None
    requiredApprovals: int | None = None  # noqa: N815 - the definition's key
    deadline: str | None = None
    # A wait or waitForEvent step: what it waits for and until when (docs/user-guide/waits.md)
    waitingFor: dict[str, Any] | None = None  # noqa: N815 - the API's key
    # A condition
    value: bool | None = None
    # A process step: the child run it waits for (docs/user-guide/sub-processes.md)
    childRun: str | None = None  # noqa: N815 - kept as the API names it
    # An agent: its conversation, counters, token usage and cost (engine/agents.py)
    agent: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, data: dict | None) -> "StepState":
        unknown = set(data or {}).difference(_NAMES)
        if unknown:
            raise ValueError(f"unknown step state keys: {', '.join(sorted(unknown))}")
        return cls(**(data or {}))

    def to_json(self) -> dict[str, Any]:
        # the instance's own attributes (its fields, in their order), not
        # dataclasses.asdict: that deep-copies a loop's items on every write of its state;
        # and not a getattr per field: a step writes its state twice (docs/performance.md)
        return {name: value for name, value in vars(self).items()
                if value is not None and not (value is False and name in _FLAGS)
                and name in _FIELDS}

    def merged(self, changes: dict | None) -> "StepState":
        """A copy with `changes` (a step type's outcome state, JSON keys) applied."""
        return StepState.from_json({**self.to_json(), **(changes or {})})


_NAMES = tuple(f.name for f in fields(StepState))
_FIELDS = frozenset(_NAMES)
_FLAGS = {f.name for f in fields(StepState) if f.default is False}  # written only when set
