"""The execution context of one worker task: the cheap steps it runs itself, and the
functions it has looked up.

A worker that finishes a step may run a cheap successor (a condition, a transform)
straight away instead of a queue round trip; the store writes that successor already
claimed by this worker and hands it over after its commit (store.claims.Handover). At
most `budget` per task, so a long chain (a loop of transforms) still goes back through
the queue now and then.
"""

import logging
from collections import deque

from automation.store import Claim, RunStore
from automation.store.doorbell import ring

logger = logging.getLogger(__name__)


class Execution(deque):
    """Claims handed over to this task, in order; a store.claims.Handover."""

    def __init__(self, store: RunStore, budget: int):
        super().__init__()
        self.store = store
        self.budget = budget
        # (function name, params) -> (spec, params, connection), looked up once per task
        self.function_rows: dict = {}

    def accept(self) -> bool:
        if self.budget <= 0:
            return False
        self.budget -= 1
        return True

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
