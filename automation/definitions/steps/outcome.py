"""What running one step produced; the run store decides what happens next from it."""

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Outcome:
    kind: str  # completed | failed | waiting | loop | deferred (retry_after seconds)
    output: Any = None
    error: dict | None = None
    targets: list[str] | None = None  # None: follow the step's `next`
    retryable: bool = False
    retry_after: float | None = None
    logs: list = field(default_factory=list)
    state: dict | None = None

    @classmethod
    def failed(cls, message: str, *, code: str = "step_failed", retryable: bool = False,
               retry_after: float | None = None, logs: list | None = None, **extra) -> "Outcome":
        return cls("failed", error={"message": message, "code": code, **extra},
                   retryable=retryable, retry_after=retry_after, logs=logs or [])
