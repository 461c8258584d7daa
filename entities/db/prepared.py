"""Statements PostgreSQL plans once per connection (SQL-level PREPARE / EXECUTE).

Django binds parameters on the client (psycopg's ClientCursor), so psycopg's own
prepared statements are out of reach; a statement run on every save (the event dispatch)
is parsed and planned again each time, a fifth of its cost. Here it is PREPAREd once on
each connection, with the parameter types PostgreSQL infers from the statement, and run
as `EXECUTE name(<the same client-bound values>)`.

Only outside a transaction: there a failed PREPARE or EXECUTE would abort it. A
connection that cannot keep a prepared statement (a pooler in transaction mode hands
each transaction to another server connection; DISCARD ALL drops them) stops preparing
at its first failure: the statement then runs as it is. The failed EXECUTE did nothing,
so running it again is safe. ENTITYFLOW_PREPARED_STATEMENTS = False never prepares.
"""

import hashlib
import logging

from django.conf import settings
from django.db import DatabaseError, connections

logger = logging.getLogger(__name__)
MOST_PER_CONNECTION = 32  # a handful of shapes are prepared; anything beyond runs as is
LOST = "26000"  # invalid_sql_statement_name: the server does not know the name
READ = "entityflow_read_"  # the prefix of statements that are a plain SELECT


class _Prepared:
    """One connection's prepared statements: SQL text → name."""

    def __init__(self, raw):
        self.raw, self.names, self.off = raw, {}, False


def execute(cursor, sql: str, params, *, using: str = "default", send=None) -> None:
    """`send(cursor, sql, params)` (default: cursor.execute), with `sql` prepared on this
    connection where it can be: PostgreSQL, outside a transaction (a failed PREPARE or
    EXECUTE there would abort it)."""
    send = send or _send
    try:
        send(cursor, executable(cursor, sql, len(params), using=using), params)
    except DatabaseError as exc:
        if not lost(exc, using=using):
            raise
        send(cursor, sql, params)  # the failed EXECUTE did nothing


def _send(cursor, sql: str, params) -> None:
    cursor.execute(sql, params)


def executable(cursor, sql: str, count: int, *, using: str = "default") -> str:
    """`EXECUTE name(%s, …)` for `sql` (with `count` parameters), preparing it on this
    connection first; `sql` itself where it cannot be prepared."""
    connection = connections[using]
    if (connection.vendor != "postgresql" or connection.in_atomic_block
            or not getattr(settings, "ENTITYFLOW_PREPARED_STATEMENTS", True)):
        return sql
    state = getattr(connection, "_entityflow_prepared", None)
    if state is None or state.raw is not connection.connection:  # a new connection
        state = connection._entityflow_prepared = _Prepared(connection.connection)
    name = state.names.get(sql)
    if name is None:
        if state.off or len(state.names) >= MOST_PER_CONNECTION:
            return sql
        name = _prepare(cursor, state, sql, count)
        if name is None:
            return sql
    return f"EXECUTE {name}({', '.join(['%s'] * count)})" if count else f"EXECUTE {name}"


def _prepare(cursor, state: _Prepared, sql: str, count: int) -> str | None:
    # Named by the text itself: where a pooler lets connections share server sessions, a
    # name another client prepared can only stand for this same statement.
    digest = hashlib.blake2b(sql.encode(), digest_size=10).hexdigest()
    name = f"{READ if _reads_only(sql) else 'entityflow_'}{digest}"
    try:
        numbered = sql % tuple(f"${i}" for i in range(1, count + 1))  # %% stays a %
    except (TypeError, ValueError):  # not psycopg's %s style: leave it alone
        return None
    try:
        cursor.execute(f"PREPARE {name} AS {numbered}")
    except DatabaseError:  # a type PostgreSQL cannot infer, a name a pooler already holds
        logger.info("statement not prepared; it runs unprepared on this connection",
                    exc_info=True)
        state.off = True
        return None
    state.names[sql] = name
    return name


def first_words(sql: str, count: int = 1) -> list[str]:
    """The statement's first `count` words (the first upper-cased), past any leading
    parenthesis: what says what kind of statement it is."""
    words = str(sql).lstrip(" \t\r\n(").split(None, count)[:count]
    return [words[0].upper(), *words[1:]] if words else []


def _reads_only(sql: str) -> bool:
    return first_words(sql) == ["SELECT"]


def is_read_name(name: str) -> bool:
    """Whether a prepared statement's name (`EXECUTE name(…)`) says it only reads: what
    tells a lost connection's retry (entities.db.db_loss) that nothing was written."""
    return name.startswith(READ)


def lost(exc: Exception, *, using: str = "default") -> bool:
    """Whether `exc` says the connection no longer holds its prepared statements; if so
    this connection stops preparing (the caller runs the statement as it is)."""
    if getattr(exc.__cause__, "sqlstate", None) != LOST:
        return False
    state = getattr(connections[using], "_entityflow_prepared", None)
    if state is not None:
        state.names.clear()
        state.off = True
    logger.warning("the database connection lost its prepared statements (a pooler in "
                   "transaction mode?); this connection no longer prepares them")
    return True
