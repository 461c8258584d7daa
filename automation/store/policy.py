"""How a step may be run, as its type says (automation.definitions.steps): whether it
may call out, whether it may continue in the worker that recorded its predecessor, its
time limit, how many attempts it gets; and the backoff between attempts
(docs/user-guide/processes.md, "Retries")."""

import random

from django.conf import settings

from automation.definitions.steps import Step, StepPolicy, step_type
from automation.functions.registry import find_action


def policy(step: Step) -> StepPolicy:
    """The step type's policy, with the function registry saying which actions are cheap."""
    return step_type(step.type).policy(step, action_is_cheap=_action_is_cheap)


def _action_is_cheap(name: str) -> bool:
    spec = find_action(name)
    return bool(spec and spec.cheap)


def step_timeout_seconds(step: Step) -> int | None:
    return policy(step).timeout_seconds


def may_continue(step: Step) -> bool:
    """Whether the worker that recorded this step's predecessor may run it at once
    (docs/architecture.md, "Steps continue in the worker"): any step but one that waits
    for people (it would only open its request) or one with a time limit of its own,
    which only the broker's per-task timeout enforces, so it comes through the broker."""
    return not step_type(step.type).waits_for_people and policy(step).timeout_seconds is None


def max_attempts(step: Step) -> int:
    return policy(step).max_attempts


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with jitter: base·2^(n-1), capped, then scaled by 50–100 %."""
    base = getattr(settings, "ENTITYFLOW_RETRY_BASE_SECONDS", 2.0)
    cap = getattr(settings, "ENTITYFLOW_RETRY_MAX_SECONDS", 600.0)
    return min(cap, base * 2 ** max(0, attempt - 1)) * random.uniform(0.5, 1.0)  # noqa: S311
