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
decides whether it runs (docs/architecture.md, "Durability").

A connection lost while the database answers (the server restarted while this worker
was idle, an operator's `pg_terminate_backend`) is also met by running `fn` once more, on
a fresh connection. So a task sends no health check before its first statement: Django's
`CONN_HEALTH_CHECKS` would spend a `SELECT 1` round trip on every task (on a step's path
from its doorbell to its claim, docs/performance.md) to find the same lost connection a
statement sooner. A second loss in one task, and any other error while the database
answers (a bad statement), is raised as before. docs/reliability.md, "Database outages".
"""

import logging
import time
from collections.abc import Callable
from contextlib import suppress
from typing import TypeVar

from django.db import DEFAULT_DB_ALIAS, Error, InterfaceError, OperationalError, connections

from entities.db.db_loss import Statements, first_line

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
    database could not be reached, or run once more on a fresh connection if its
    connection was lost while the database answers (see the module docstring)."""
    conn = connections[using]
    retried = False
    while True:
        if _down_since is not None:
            wait_until_reachable(using)
        statements = Statements(conn)
        if not conn.in_atomic_block:
            # a connection that died while idle fails fn's first statement and is met
            # below: Django's SELECT 1 before it would only find the same thing sooner
            conn.health_check_done = True
        try:
            with conn.execute_wrapper(statements):
                return fn()
        except (OperationalError, InterfaceError) as exc:
            if conn.in_atomic_block:
                raise  # a caller's transaction: its connection is not ours to replace
            lost = statements.lost(exc)  # asked before reachable() replaces the connection
            if not reachable(using):
                _outage_began(exc, what)
                continue
            if retried or not lost:
                raise  # the database answers: a bad statement, or a second lost connection
            logger.warning("%s lost its database connection (%s); running it again on a "
                           "fresh connection", what, first_line(exc))
            retried = True


def _outage_began(exc: BaseException, what: str) -> None:
    global _down_since
    if _down_since is None:
        _down_since = time.monotonic()
        logger.error("database unreachable (%s); holding %s and trying to connect every "
                     "%.1f s, taking no further work until it answers", first_line(exc),
                     what, POLL_SECONDS[-1])


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
