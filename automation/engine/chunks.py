"""A chunk doorbell's task: the first steps of some of a batch chunk's runs, run one
after another in one task instead of a broker round trip each (docs/architecture.md,
"Chunk doorbells").

Each step is executed exactly as its own doorbell would have it (`execute_step`: the
claim decides, a step already taken or finished is skipped, a paused process holds it,
its run continues within the continuation bound), so the history is the same. Bounded
like a continued run: after ENTITYFLOW_CONTINUE_MAX_MS the task rings one doorbell for
the steps it has not begun, on the same priority's queue, and gives its worker back; and
it gives the worker back the same way when a doorbell of higher priority is waiting, so
a batch never keeps a high run waiting for more than one step per worker.
"""

import logging
import time
from collections.abc import Callable

from django.conf import settings

from automation.store.doorbell import higher_waiting, ring_pieces

logger = logging.getLogger(__name__)


def execute_chunk(step_run_ids: list[int], priority: str, *,
                  execute: Callable[[int], None]) -> int:
    """`execute(step_run_id)` for each, within the bound; returns how many were begun.
    A step that raises is logged and left to its lease and the sweeper (as a failed
    task of its own would be); the others still run, and the task then fails with the
    first error so the worker's log shows it."""
    deadline = time.monotonic() + settings.ENTITYFLOW_CONTINUE_MAX_MS / 1000
    first_error = None
    for begun, step_run_id in enumerate(step_run_ids):
        if begun and (time.monotonic() >= deadline or higher_waiting(priority)):
            ring_pieces([step_run_ids[begun:]], priority=priority)
            break
        try:
            execute(step_run_id)
        except Exception as exc:  # the step's row is the truth: the sweeper takes it
            logger.exception("step run %s of a chunk doorbell failed", step_run_id)
            first_error = first_error or exc
    else:
        begun = len(step_run_ids)
    if first_error is not None:
        raise first_error
    return begun
