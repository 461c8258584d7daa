"""Whether a process is paused: the one place every part asks (docs/user-guide/
operating-runs.md#pause-and-resume). A paused process is one whose circuit breaker row
(`ProcessBreaker.paused_at`) is set, by a breach or by a person.

A paused process holds its new starts (services.breaker.admit) and its running runs
stop at their next step boundary: a worker that claims a step of a paused process gives
it back without running it, due only at HELD_UNTIL (so neither the claim nor the sweeper
takes it) until the process is resumed (RunStore.hold / continue_held).

Workers ask `is_paused` before every step, so the answer is read at most once a second
per worker process (one query for every paused process): a pause takes effect within
that second. A hold is written only while the process is still paused (in the same
statement), and the sweeper continues any held step of a process that is not paused,
so a resume racing a worker's hold cannot leave a step held for good."""

import time
from datetime import UTC, datetime

from automation.models import ProcessBreaker

# "Not before the process is resumed": later than any retry's backoff can be.
HELD_UNTIL = datetime(9999, 12, 31, tzinfo=UTC)
CHECK_EVERY_SECONDS = 1.0
_state: dict = {"at": None, "ids": frozenset()}


def paused_ids() -> frozenset:
    now = time.monotonic()
    if _state["at"] is None or now - _state["at"] >= CHECK_EVERY_SECONDS:
        _state["ids"] = frozenset(ProcessBreaker.objects.filter(
            paused_at__isnull=False).values_list("process_id", flat=True))
        _state["at"] = now
    return _state["ids"]


def is_paused(process_id: int) -> bool:
    """Not paused: from the cache (a pause takes effect within CHECK_EVERY_SECONDS).
    Paused: confirmed by a fresh read, so a worker never holds a step of a process
    resumed in the meantime (its held steps were rung already and would stay held)."""
    if process_id not in paused_ids():
        return False
    forget()
    return process_id in paused_ids()


def paused_rows():
    """The breaker rows of paused processes, for a statement's EXISTS (RunStore.hold)."""
    return ProcessBreaker.objects.filter(paused_at__isnull=False)


def forget() -> None:
    """Read again at the next question (this process paused or resumed one)."""
    _state["at"] = None
