"""A worker whose database refuses connections holds its task and waits, instead of
failing task after task.

When PostgreSQL is down, restarting after a crash ("the database system is starting
up"), or out of connections ("too many clients"), every statement fails at once. A worker
that let each task fail would take doorbell after doorbell from the queue, fail each with
a traceback (and django-q would try to store each failure in the same database), and the
steps would wait for the sweeper, a minute or more after the database came back.

`through(fn)` runs `fn`; if it fails because the database cannot be reached (a fresh
connection cannot be opened either), this process logs one line, keeps the task it holds
and tries to connect every POLL_SECONDS until the database answers, logs one line again,
and runs `fn` once more. Meanwhile the worker takes no further doorbells: they stay in
the queue for when the database is back. Running `fn` again is safe for a step: its claim
decides whether it runs (docs/architecture.md, "Durability"). An error while the database
answers is not an outage and is raised as before. docs/reliability.md, "Database outages".
"""

import logging
import time
from collections.abc import Callable
from contextlib import suppress
from typing import TypeVar

from django.db import DEFAULT_DB_ALIAS, Error, InterfaceError, OperationalError, connections

logger = logging.getLogger(__name__)

T = TypeVar("T")
POLL_SECONDS = (0.1, 0.25, 0.5)  # then every 0.5 s: a step resumes within a second
_down_since: float | None = None  # this process's outage, while one lasts


def reachable(using: str = DEFAULT_DB_ALIAS) -> bool:
    """Whether a connection can be opened and answers (the current one is closed first:
    after a failure it may be broken)."""
    conn = connections[using]
    _drop(conn)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except (OperationalError, InterfaceError):
        _drop(conn)
        return False


def _drop(conn) -> None:
    with suppress(Error):  # closing what is already gone
        conn.close()


def through(fn: Callable[[], T], *, what: str = "task", using: str = DEFAULT_DB_ALIAS) -> T:
    """`fn()`, held and run again after the database comes back if it failed because the
    database could not be reached (see the module docstring)."""
    while True:
        if _down_since is not None:
            wait_until_reachable(using)
        try:
            return fn()
        except (OperationalError, InterfaceError) as exc:
            if connections[using].in_atomic_block:
                raise  # a caller's transaction: its connection is not ours to replace
            if reachable(using):
                raise  # the database answers: not an outage (a lost connection, a bad query)
            _outage_began(exc, what)


def _outage_began(exc: BaseException, what: str) -> None:
    global _down_since
    if _down_since is None:
        _down_since = time.monotonic()
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        logger.error("database unreachable (%s); holding %s and trying to connect every "
                     "%.1f s, taking no further work until it answers", first_line, what,
                     POLL_SECONDS[-1])


def wait_until_reachable(using: str = DEFAULT_DB_ALIAS) -> None:
    """Block until a connection opens, then log the recovery (once per outage)."""
    global _down_since
    attempt = 0
    while not reachable(using):
        time.sleep(POLL_SECONDS[min(attempt, len(POLL_SECONDS) - 1)])
        attempt += 1
    if _down_since is not None:
        logger.warning("database reachable again after %.1f s; resuming",
                       time.monotonic() - _down_since)
        _down_since = None
