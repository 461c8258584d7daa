"""How a step may be run: cheap enough to run inline, its time limit, how many attempts
it gets, and the backoff between them (docs/user-guide/api-processes.md, "Retries")."""

import random

from django.conf import settings

from automation.definitions import Step
from automation.functions.registry import all_actions


def step_timeout_seconds(step: Step) -> int | None:
    timeout_ms = step.config.get("timeout") if step.type != "human" else None
    return int(timeout_ms / 1000) + 1 if timeout_ms else None


def is_cheap(step: Step) -> bool:
    """Local work with no I/O, safe to run straight after its predecessor."""
    if step.type in ("condition", "parallel"):
        return True
    if step.type == "function" and not step.config.get("timeout"):
        spec = all_actions().get(step.raw.get("function"))
        return bool(spec and spec.cheap)
    return False


def max_attempts(step: Step) -> int:
    return int(step.config.get("retries", 0)) + 1 if step.type == "function" else 1


def time_limit_ms(step: Step) -> int | None:
    """The step's own run-time limit (a human step's timeout is its approval deadline)."""
    return step.config.get("timeout") if step.type != "human" else None


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with jitter: base·2^(n-1), capped, then scaled by 50–100 %."""
    base = getattr(settings, "ENTITYFLOW_RETRY_BASE_SECONDS", 2.0)
    cap = getattr(settings, "ENTITYFLOW_RETRY_MAX_SECONDS", 600.0)
    return min(cap, base * 2 ** max(0, attempt - 1)) * random.uniform(0.5, 1.0)  # noqa: S311
