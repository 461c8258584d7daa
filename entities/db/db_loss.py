"""API requests that lose their database connection.

Django checks a connection's health when a request first uses it (CONN_HEALTH_CHECKS);
a connection lost after that check (the server restarted, a failover, an operator's
`pg_terminate_backend`) fails whatever statement comes next. What the request may do
about it depends on what of it has been committed:

- **Nothing yet**: the view runs once more on a fresh connection. The first attempt left
  nothing behind, so running it again is running it for the first time.
- **Something, or possibly something**: 503 `unavailable` with `Retry-After`, saying the
  request may have been applied. Running the view again could apply it twice.
- **Reads after a commit** that a view wraps in `read()` are repeated on a fresh
  connection: a read is always safe to repeat. `POST /api/events` reads the runs its
  committed event started this way, so the client still gets its 202.

What has been committed is seen by `Writes`, an execute wrapper on the request's
connection; a second lost connection in one request answers 503 either way. Only the
default database is watched (the project has no other). Effects outside the database
(doorbells to the broker, outbound calls) happen after a commit here, so they are covered
by the same rule: nothing committed, nothing sent.
"""

import logging
from collections.abc import Callable
from typing import TypeVar

from django.db import DEFAULT_DB_ALIAS, Error, InterfaceError, OperationalError, connections
from django.db.transaction import TransactionManagementError
from rest_framework import status
from rest_framework.exceptions import APIException

from entities.db import prepared

logger = logging.getLogger(__name__)

T = TypeVar("T")
RETRY_AFTER_SECONDS = 2
# First keywords of statements that change nothing the server keeps: reads, and the
# transaction control Django sends itself (savepoints; COMMIT and BEGIN do not pass here).
READ_KEYWORDS = frozenset({"SELECT", "SHOW", "EXPLAIN", "VALUES", "SAVEPOINT", "RELEASE",
                           "ROLLBACK"})


class DatabaseUnavailable(APIException):
    """503 in the one error format, with Retry-After (DRF's handler adds it for `wait`)."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "unavailable"
    error_code = "unavailable"
    wait = RETRY_AFTER_SECONDS

    def __init__(self, *, applied: bool):
        if applied:
            message = ("The database connection was lost after this request had saved "
                       "changes: it may have been applied. Check before sending it again.")
        else:
            message = ("The database is unavailable; the request was not applied. Send it "
                       "again later.")
        self.applied = applied
        super().__init__(message)


def is_write(sql: str) -> bool:
    """Whether a statement may change what the server keeps (anything but a read). A
    PREPARE only keeps a plan in the session; an EXECUTE is what its statement is
    (entities.db.prepared names the reads)."""
    words = prepared.first_words(sql, 2)
    if not words:
        return True
    if words[0] == "PREPARE":
        return False
    if words[0] == "EXECUTE":
        return len(words) < 2 or not prepared.is_read_name(words[1])
    return words[0] not in READ_KEYWORDS


def raw_lost(raw) -> bool:
    """Whether a driver connection is gone: psycopg 3 says `broken`/`closed`, psycopg 2
    `closed` (1 or 2). SQLite connections have neither and are never lost this way."""
    return bool(getattr(raw, "broken", False) or getattr(raw, "closed", False))


class Statements:
    """An execute wrapper that remembers the driver connection of the last statement.

    Whether an error is a lost connection is decided from that connection, not from the
    current one: a transaction whose connection broke is rolled back by Django, which
    closes the connection and at once opens a fresh one when it restores autocommit."""

    def __init__(self, conn):
        self.conn = conn
        self.raw = None

    def __call__(self, execute, sql, params, many, context):
        self.raw = self.conn.connection
        return execute(sql, params, many, context)

    def lost(self, exc: BaseException) -> bool:
        """Whether `exc` is the connection being lost (not a bad or cancelled statement):
        the last statement's connection is gone, or there is none (it could not open)."""
        if not isinstance(exc, (OperationalError, InterfaceError)):
            return False
        return (self.conn.connection is None or raw_lost(self.conn.connection)
                or (self.raw is not None and raw_lost(self.raw)))


def drop(conn) -> None:
    """Close a lost connection (or the fresh one Django opened after it), so that the
    next statement starts on a connection of its own."""
    try:
        conn.close()
    except Error:
        pass  # closing what is already gone


class Writes(Statements):
    """Knows whether anything of a request has been committed.

    A write outside a transaction (autocommit) counts as committed once it is sent,
    whatever comes back: the server may have applied it before the connection broke. A
    write inside a transaction is *in doubt* until its transaction commits (on_commit:
    committed; a savepoint rolled back takes its callbacks with it) or the connection it
    was sent on is found lost by a statement inside a transaction (the server rolls back
    what it never committed). A COMMIT that fails leaves its writes in doubt: it may have
    reached the server."""

    def __init__(self, conn):
        super().__init__(conn)
        self.committed = False  # or may have been: an autocommit write, a doubt left behind
        self._in_doubt_on = None  # the driver connection of writes whose commit is not known

    @property
    def applied(self) -> bool:
        """Whether something of the request has, or may have, been committed."""
        return self.committed or self._in_doubt_on is not None

    def __call__(self, execute, sql, params, many, context):
        conn = self.conn
        self.raw = conn.connection
        if is_write(sql):
            if not conn.in_atomic_block:
                self.committed = True
            else:
                if self._in_doubt_on is not None and self._in_doubt_on is not self.raw:
                    self.committed = True  # a doubt on a connection gone cannot be resolved
                self._in_doubt_on = self.raw
                conn.on_commit(self._commit)
        try:
            return execute(sql, params, many, context)
        except Error:
            if (self._in_doubt_on is self.raw and conn.in_atomic_block
                    and raw_lost(self.raw)):
                self._in_doubt_on = None  # the transaction died before its COMMIT
            raise

    def _commit(self) -> None:
        self.committed = True
        self._in_doubt_on = None


class ReadsOnly(Statements):
    """Refuses writes: what `read()` runs must be safe to run twice."""

    def __call__(self, execute, sql, params, many, context):
        if is_write(sql):
            raise TransactionManagementError(f"db_loss.read() runs reads only, not: {sql[:80]}")
        return super().__call__(execute, sql, params, many, context)


def run_view(attempt: Callable[[], T], *, what: str = "request") -> T:
    """Run `attempt` (a view), once more on a fresh connection if it lost its database
    connection before committing anything; DatabaseUnavailable (503) if it lost it after,
    or lost it twice. Inside a caller's transaction (ATOMIC_REQUESTS, a test) the loss is
    the caller's to handle and passes through."""
    conn = connections[DEFAULT_DB_ALIAS]
    if conn.in_atomic_block:
        return attempt()
    # A connection that died while idle fails the first statement, nothing committed, and
    # is retried here like one lost later: Django's check of it (a SELECT 1 round trip
    # before the request's first statement) would only find the same thing sooner.
    conn.health_check_done = True
    retried = False
    while True:
        writes = Writes(conn)
        try:
            with conn.execute_wrapper(writes):
                return attempt()
        except Error as exc:
            if not writes.lost(exc):
                raise
            drop(conn)
            if writes.applied:
                logger.error("%s lost its database connection after committing; answering "
                             "503", what, exc_info=exc)
                raise DatabaseUnavailable(applied=True) from exc
            if retried:  # nothing written: a database down or refusing connections is one
                # line per request, not a traceback each (docs/reliability.md)
                logger.error("%s found the database unavailable twice (%s); answering 503, "
                             "nothing applied", what, first_line(exc))
                raise DatabaseUnavailable(applied=False) from exc
            logger.warning("%s lost its database connection before committing anything "
                           "(%s); running it again on a fresh connection", what,
                           first_line(exc))
            retried = True


def first_line(exc: BaseException) -> str:
    """An error's first line, for a log line that is not a traceback."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read(fn: Callable[[], T]) -> T:
    """`fn()`, a read (writes are refused), run once more on a fresh connection if the
    connection is lost under it. For reads after a commit, which `run_view` cannot repeat
    on their own. Inside a transaction there is no fresh connection to move to: `fn()`."""
    conn = connections[DEFAULT_DB_ALIAS]
    reads = ReadsOnly(conn)
    try:
        with conn.execute_wrapper(reads):
            return fn()
    except Error as exc:
        if conn.in_atomic_block or not reads.lost(exc):
            raise
        logger.warning("a read lost its database connection (%s); reading again", exc)
    drop(conn)
    with conn.execute_wrapper(ReadsOnly(conn)):
        return fn()
