"""Statements captured from a real run and sent again for fresh runs: the floors of the
bench (bench/floor.py, the e2e round's database floor; bench/trigger_floor.py, the least
an API trigger can cost). Capturing the engine's own statements, rather than writing
their SQL again here, keeps a floor writing what the engine writes (the same tables,
columns and so indexes) when the engine changes.

A captured statement's values are the captured run's; `slots` says, once per statement,
which of them a fresh run changes and how, so that each fresh run only fills them in
(`filled`): the captured run's id (in the form it was sent: a UUID, or text on SQLite)
becomes the fresh run's, every other UUID (a claim) a new one per run, a captured step
run's id the fresh run's, every time (a datetime, or SQLite's text form of one) now
plus its offset from the statement's earliest, and the input the fresh run's.
"""

import re
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime

from django.db import connections

# Django's SQLite form of a time (`adapt_datetimefield_value`: str() of the UTC time)
_TEXT_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{1,6})?")


@contextmanager
def captured(using: str = "default"):
    """The statements sent on `using` in the block, [(sql, params)], as Django's execute
    wrappers see them. On SQLite the engine sends some past Django's cursor
    (entities.db.driver), where no wrapper sees them, except where Django logs every
    statement: so in the block it does (its own transaction, `atomic`, instead of the
    driver's: the same INSERTs)."""
    log: list = []

    def keep(execute, sql, params, many, context):
        log.append((sql, list(params or ())))
        return execute(sql, params, many, context)

    connection = connections[using]
    forced = connection.force_debug_cursor
    connection.force_debug_cursor = forced or connection.vendor == "sqlite"
    try:
        with connection.execute_wrapper(keep):
            yield log
    finally:
        connection.force_debug_cursor = forced


def _time(value) -> datetime | None:
    """A captured time as a naive UTC datetime, or None for any other value."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, str) and _TEXT_TIME.fullmatch(value):
        return datetime.fromisoformat(value)
    return None


def slots(params: list, *, run: uuid.UUID, steps=frozenset(), input_marker: str | None = None
          ) -> list[tuple]:
    """[(index, kind, detail)] for the values of one captured statement that a fresh run
    changes: ("run", the form: UUID, str or hex), ("claim", the captured UUID), ("time",
    (offset, aware)), ("step", the captured step run id: a value in `steps`), ("input",
    None: a value holding `input_marker`, the captured run's input)."""
    times = [t for t in map(_time, params) if t is not None]
    earliest = min(times, default=None)
    out = []
    for index, value in enumerate(params):
        if isinstance(value, uuid.UUID):
            out.append((index, "run", uuid.UUID) if value == run else (index, "claim", value))
        elif isinstance(value, str) and value in (str(run), run.hex):
            out.append((index, "run", str if value == str(run) else "hex"))
        elif (when := _time(value)) is not None:
            out.append((index, "time", (when - earliest, isinstance(value, datetime))))
        elif isinstance(value, int) and not isinstance(value, bool) and value in steps:
            out.append((index, "step", value))
        elif input_marker is not None and input_marker in str(getattr(value, "obj", value)):
            out.append((index, "input", None))
    return out


def filled(params: list, plan: list[tuple], *, run_id: uuid.UUID, now: datetime,
           step_ids: dict | None = None, claims: dict | None = None, input=None) -> list:
    """`params` with the `slots` of `plan` filled in for a fresh run: `now` an aware UTC
    time; `step_ids` maps captured step run ids to the fresh run's (one not in it is
    left); `claims` keeps the fresh UUID of each captured one across a run's
    statements; `input` the fresh input as the driver is sent it (a field's
    get_db_prep_value)."""
    values = list(params)
    naive = now.astimezone(UTC).replace(tzinfo=None)
    for index, kind, detail in plan:
        if kind == "run":
            value = run_id if detail is uuid.UUID else str(run_id) if detail is str else run_id.hex
        elif kind == "claim":
            value = claims.setdefault(detail, uuid.uuid4())
        elif kind == "time":
            offset, aware = detail
            value = now + offset if aware else str(naive + offset)
        elif kind == "step":
            value = step_ids.get(detail, detail)
        else:
            value = input
        values[index] = value
    return values
