"""The execution context of one worker task: the steps of a run it continues itself,
within its bound, and the functions it has looked up.

A worker that records a step whose one successor may run here (store.policy.may_continue)
runs that successor at once instead of a broker round trip: the store writes it already
claimed by this worker, in the statement or transaction that records its predecessor,
and hands it over after the commit (store.claims.Handover), so it is durable before it
starts. Bounded: after `max_steps` steps or `max_ms` milliseconds the task takes no
more, and the next step is written unclaimed and rung for, so one long run cannot hold a
worker while other runs wait (docs/architecture.md, "Steps continue in the worker").
"""

import logging
import time
from collections import deque

from automation.store import Claim, RunStore
from automation.store.doorbell import ring

logger = logging.getLogger(__name__)


class Execution(deque):
    """Claims handed over to this task, in order; a store.claims.Handover."""

    def __init__(self, store: RunStore, *, max_steps: int, max_ms: float):
        super().__init__()
        self.store = store
        self.steps_left = max_steps
        self.deadline = time.monotonic() + max_ms / 1000
        # (function name, params) -> (spec, params, connection), looked up once per task
        self.function_rows: dict = {}

    def accept(self) -> bool:
        if self.steps_left <= 0 or time.monotonic() >= self.deadline:
            return False
        self.steps_left -= 1
        return True

    def stop(self) -> None:
        """Continue nothing more in this task (it runs under a time limit of one step)."""
        self.steps_left = 0

    def run_here(self, claim: Claim) -> None:
        self.append(claim)

    def __enter__(self) -> "Execution":
        return self

    def __exit__(self, *exc) -> None:
        while self:  # never strand a step: give back what was not run, and ring for it
            self._release(self.popleft())

    def _release(self, claim: Claim) -> None:
        try:
            self.store.release(claim)
        except Exception:  # the lease runs out and the sweeper takes it back
            logger.warning("could not release step run %s", claim.step_run.pk, exc_info=True)
            return
        ring(claim.step_run.pk, priority=claim.step_run.priority)
