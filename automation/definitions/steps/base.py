"""What every step type answers, and the shapes those answers come in.

A step type (function, condition, loop, ...) is one class: how a step of that type is
validated, where it leads, how it runs, how the engine schedules it, what a dry run can
tell about it and how the editor sums it up. Modules elsewhere ask the type
(automation.definitions.steps.step_type) instead of comparing type names.

This is the definitions layer: it imports nothing of the engine, the functions, the
services, the models or any adapter. What running a step needs from those comes through
the `StepRuntime` it is handed.
"""

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from automation.definitions.errors import DefinitionErrors
from automation.definitions.steps.outcome import Outcome

# Config keys that name another step: every step's edges follow them, whatever its type.
BRANCH_KEYS = ("else", "onError", "onTimeout", "then")
# Branches a dry run cannot rule out, since they depend on how the step ends.
MAYBE_KEYS = ("onError", "onTimeout")


@dataclass
class Step:
    id: str
    type: str
    raw: dict
    next: list[str] = field(default_factory=list)
    zone: str | None = None  # the process's `timezone` (IANA); None: settings.TIME_ZONE

    @property
    def config(self) -> dict:
        return self.raw.get("config") or {}

    @property
    def on_error(self) -> str | None:
        return self.config.get("onError")


@dataclass(frozen=True)
class StepPolicy:
    """How the engine schedules a step. `time_limit_ms` is how long one attempt may run
    (a human step's `timeout` is its approval deadline, not a run-time limit);
    `timeout_seconds` is that limit as the queue's whole-second timeout."""

    cheap: bool  # local work with no I/O: it may run on a claim not yet flushed to disk
    timeout_seconds: int | None
    max_attempts: int
    time_limit_ms: int | None


class StepRuntime(Protocol):
    """What a step type may use while its step runs; the engine hands one in."""

    @property
    def input(self) -> Any: ...

    @property
    def scope(self) -> dict: ...

    @property
    def logs(self) -> list: ...

    def log(self, message: str, **data: Any) -> None: ...

    def call_function(self, step: Step) -> Any:
        """Resolve the step's function, check its params, evaluate `config.input` into the
        input and call the function; its output."""

    def run_agent(self, step: Step) -> Outcome:
        """Run the step's agent loop (docs/user-guide/agents.md) to its outcome."""

    def start_process(self, step: Step, *, input: Any, entity: Any) -> dict:
        """Start the step's sub-process run (once per attempt: a repeated call returns
        the same run) and return it as {id, process, version, status, result, error}
        (docs/user-guide/sub-processes.md)."""


Edge = tuple[str, str]  # (label, target); label "next" for a plain `next`
DryTarget = tuple[str, bool]  # (target, certain)


class StepType(ABC):
    """The base of every step type; a subclass is registered once under its `name`."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    has_body: ClassVar[bool] = False  # its `next` starts a body that leads back to it
    waits_for_people: ClassVar[bool] = False
    hides_after: ClassVar[frozenset[str]] = frozenset()  # scope names unknown to a dry run after it

    def validate(self, raw: dict, path: str, errors: DefinitionErrors, *,  # noqa: B027 - a hook
                 function_exists: Callable[[str], bool]) -> None:
        """Add what is wrong with this type's own fields (the generic checks are done)."""

    def validate_params(self, raw: dict, path: str, errors: DefinitionErrors,  # noqa: B027
                        check_params: Callable[[str, dict], dict[str, list[str]]]) -> None:
        """Add what a called function finds wrong with `config.params`; most types have none."""

    def validate_references(self, raw: dict, path: str, errors: DefinitionErrors,  # noqa: B027
                            stored_exists: Callable[[str, str], bool]) -> None:
        """Add the stored things (an agent) the step names that do not exist."""

    def calls_process(self, raw: dict) -> str | None:
        """The process (id or slug) a step of this type runs as a sub-process, if any."""
        return None

    def edges(self, step: Step) -> list[Edge]:
        edges = [("next", target) for target in step.next]
        for key in BRANCH_KEYS:
            target = step.config.get(key)
            if isinstance(target, str) and target:
                edges.append((key, target))
        return edges

    @abstractmethod
    def execute(self, step: Step, runtime: StepRuntime) -> Outcome:
        """Run the step once; errors are raised and the engine turns them into failures."""

    def policy(self, step: Step, *, action_is_cheap: Callable[[str], bool]) -> StepPolicy:
        limit_ms = self.time_limit_ms(step)
        return StepPolicy(
            cheap=self.is_cheap(step, action_is_cheap),
            timeout_seconds=int(limit_ms / 1000) + 1 if limit_ms else None,
            max_attempts=self.max_attempts(step),
            time_limit_ms=limit_ms,
        )

    def is_cheap(self, step: Step, action_is_cheap: Callable[[str], bool]) -> bool:
        return False

    def time_limit_ms(self, step: Step) -> int | None:
        return step.config.get("timeout")

    def max_attempts(self, step: Step) -> int:
        return 1

    def dry_run(self, step: Step, entry: dict, scope: dict, unknown: frozenset) -> list[DryTarget]:
        """Fill in what is known about the step in `entry`; the targets to go on to.

        `scope` is the expression scope on this path; the names in `unknown` have no
        known value there."""
        return [(target, True) for target in step.next] + self.maybe_targets(step)

    def maybe_targets(self, step: Step) -> list[DryTarget]:
        config = step.config
        return [(config[key], False) for key in MAYBE_KEYS if isinstance(config.get(key), str)]

    def summary(self, raw: dict) -> str:
        """One line for the editor's step list; `raw` may be an invalid step."""
        return ""

    def when_due(self, step: Step, step_input: Any) -> Outcome:
        """How a step that waits for a time ends when the time comes (wait, waitForEvent:
        docs/user-guide/waits.md); the others never wait for one."""
        raise NotImplementedError(f"A {self.name} step does not wait for a time.")


def raw_config(raw: dict) -> dict:
    """A raw step's config, or {} when it is missing or not an object."""
    config = raw.get("config")
    return config if isinstance(config, dict) else {}
