"""Which Function rows exist, by name, without a query per step.

Each process reads the (few, admin-made) rows once, and again when the shared stamp
moves (checked at most once a second, as the trigger index does) or at once after a
change made in this process. A step calling a built-in that no row shadows, such as
`noop` or `transform`, then reads nothing. The row's connection is not kept: it holds
credentials a connector may refresh, so it is read fresh each time a step needs it.
"""

import copy
import threading
import time
from dataclasses import dataclass

from django.db import transaction
from django.db.models import F

STAMP_CHECK_SECONDS = 1.0
STAMP_ID = 2  # IndexStamp row of the function rows (1 is the trigger index's)


@dataclass(frozen=True)
class FunctionRow:
    action: str
    config: dict
    connection_id: int | None
    params_schema: dict | None = None  # the arguments a caller (an agent) passes

    def fresh_config(self) -> dict:
        return copy.deepcopy(self.config)  # callers may change what they are given


_lock = threading.Lock()
_state: dict = {"rows": None, "generation": None, "checked": 0.0}


def function_row(name: str) -> FunctionRow | None:
    return _current().get(name)


def _current() -> dict[str, FunctionRow]:
    from automation.models import Function, IndexStamp

    now = time.monotonic()
    rows = _state["rows"]
    if rows is not None and now - _state["checked"] < STAMP_CHECK_SECONDS:
        return rows
    with _lock:
        # the stamp before the rows: a change committed in between moves the stamp
        # again past what is read here, so the next check reads the rows again
        generation = IndexStamp.objects.filter(pk=STAMP_ID).values_list(
            "generation", flat=True).first()
        if rows is None or generation != _state["generation"]:
            rows = {f.name: FunctionRow(f.action, f.config, f.connection_id, f.params_schema)
                    for f in Function.objects.only("name", "action", "config", "connection_id",
                                                   "params_schema")}
            _state.update(rows=rows, generation=generation)
        _state["checked"] = now
    return rows


def invalidate() -> None:
    _state["rows"] = None


def functions_changed(**_kwargs) -> None:
    """A Function row was saved or deleted: every process reads the rows again."""
    from automation.models import IndexStamp

    IndexStamp.objects.get_or_create(pk=STAMP_ID)
    IndexStamp.objects.filter(pk=STAMP_ID).update(generation=F("generation") + 1)
    invalidate()  # this process at once (its own transaction sees the change)
    transaction.on_commit(invalidate)  # and after commit, in case it read in between
