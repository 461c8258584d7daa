"""Statements PostgreSQL plans once per connection (SQL-level PREPARE / EXECUTE).

Django binds parameters on the client (psycopg's ClientCursor), so psycopg's own
prepared statements are out of reach; a statement run on every save (the event dispatch)
is parsed and planned again each time, a fifth of its cost. Here it is PREPAREd once on
each connection, with the parameter types PostgreSQL infers from the statement, and run
as `EXECUTE name(<the same client-bound values>)`.

Only outside a transaction, where a failed PREPARE or EXECUTE would abort it, unless
the statement runs in a savepoint of its own (`execute_guarded`). A
connection that cannot keep a prepared statement (a pooler in transaction mode hands
each transaction to another server connection; DISCARD ALL drops them) stops preparing
at its first failure: the statement then runs as it is. The failed EXECUTE did nothing,
so running it again is safe. ENTITYFLOW_PREPARED_STATEMENTS = False never prepares.

A statement on the step's path that runs on its own (`fetch_one_alone`: a step's claim,
its record) goes further: its values are bound by the server, not quoted into the text
in Python, through psycopg's own prepared statements (its public `prepare=True`) on a
plain psycopg cursor of the same connection, wrapped as Django wraps its own cursors (its
execute wrappers and database errors). Quoting each value on the client was
the largest single part of a step's Python time (docs/performance.md). The same rules
hold: only outside a transaction, never with ENTITYFLOW_PREPARED_STATEMENTS = False, and
a connection whose server forgot the statement (or already holds its name) stops binding
on the server and runs it the way above.
"""

import hashlib
import logging
import threading

import psycopg
from django.conf import settings
from django.db import DatabaseError, connections

logger = logging.getLogger(__name__)
MOST_PER_CONNECTION = 32  # a handful of shapes are prepared; anything beyond runs as is
LOST = "26000"  # invalid_sql_statement_name: the server does not know the name
TAKEN = "42P05"  # duplicate_prepared_statement: a name a pooler's session already holds
READ = "entityflow_read_"  # the prefix of statements that are a plain SELECT


class _Prepared:
    """One connection's prepared statements: SQL text → name."""

    def __init__(self, raw):
        self.raw, self.names, self.off = raw, {}, False
        # fetch_one_alone's cursor, kept open for the next statement of the same thread
        self.cursor, self.thread = None, None


def _state(connection) -> _Prepared:
    state = getattr(connection, "_entityflow_prepared", None)
    if state is None or state.raw is not connection.connection:  # a new connection
        state = connection._entityflow_prepared = _Prepared(connection.connection)
    return state


def _preparing(connection, *, guarded: bool = False) -> bool:
    return (connection.vendor == "postgresql"
            and (guarded or not connection.in_atomic_block)
            and getattr(settings, "ENTITYFLOW_PREPARED_STATEMENTS", True))


def execute(cursor, sql: str, params, *, using: str = "default", send=None,
            guarded: bool = False) -> None:
    """`send(cursor, sql, params)` (default: cursor.execute), with `sql` prepared on this
    connection where it can be: PostgreSQL, outside a transaction (a failed PREPARE or
    EXECUTE there would abort it), or inside one when `guarded` (`send` runs it in a
    savepoint of its own, execute_guarded)."""
    send = send or _send
    try:
        send(cursor, executable(cursor, sql, len(params), using=using, guarded=guarded), params)
    except DatabaseError as exc:
        if not lost(exc, using=using):
            raise
        send(cursor, sql, params)  # the failed EXECUTE did nothing


GUARD = "entityflow_guard"  # the savepoint of execute_guarded


def execute_guarded(cursor, sql: str, params, *, using: str = "default") -> None:
    """Inside a transaction: `sql` (one statement, prepared where it can be) in a
    savepoint of its own, sent with it in one round trip (`SAVEPOINT; sql; RELEASE`)
    where Django's savepoint costs two more. When it fails, the savepoint is rolled back,
    so the transaction stays usable (what `sql` wrote is undone), and the error raised;
    its result is the cursor's current one."""
    execute(cursor, sql, params, using=using, send=_send_guarded, guarded=True)


def _send_guarded(cursor, sql: str, params) -> None:
    try:
        cursor.execute(f"SAVEPOINT {GUARD}; {sql}; RELEASE SAVEPOINT {GUARD}", params)
    except DatabaseError:
        cursor.execute(f"ROLLBACK TO SAVEPOINT {GUARD}; RELEASE SAVEPOINT {GUARD}")
        raise
    cursor.nextset()  # past the SAVEPOINT, to the statement's own result


def _send(cursor, sql: str, params) -> None:
    cursor.execute(sql, params)


def executable(cursor, sql: str, count: int, *, using: str = "default",
               guarded: bool = False) -> str:
    """`EXECUTE name(%s, …)` for `sql` (with `count` parameters), preparing it on this
    connection first; `sql` itself where it cannot be prepared. `guarded`: inside a
    transaction, `sql` runs in a savepoint of its own (execute_guarded), and so is the
    PREPARE."""
    connection = connections[using]
    if not _preparing(connection, guarded=guarded):
        return sql
    state = _state(connection)
    name = state.names.get(sql)
    if name is None:
        if state.off or len(state.names) >= MOST_PER_CONNECTION:
            return sql
        name = _prepare(cursor, state, sql, count, guarded=connection.in_atomic_block)
        if name is None:
            return sql
    return f"EXECUTE {name}({', '.join(['%s'] * count)})" if count else f"EXECUTE {name}"


def _prepare(cursor, state: _Prepared, sql: str, count: int, *,
             guarded: bool = False) -> str | None:
    # Named by the text itself: where a pooler lets connections share server sessions, a
    # name another client prepared can only stand for this same statement.
    digest = hashlib.blake2b(sql.encode(), digest_size=10).hexdigest()
    name = f"{READ if _reads_only(sql) else 'entityflow_'}{digest}"
    try:
        numbered = sql % tuple(f"${i}" for i in range(1, count + 1))  # %% stays a %
    except (TypeError, ValueError):  # not psycopg's %s style: leave it alone
        return None
    try:
        # PREPARE is not undone by a rollback: only a failed one needs the savepoint
        (_send_guarded if guarded else _send)(cursor, f"PREPARE {name} AS {numbered}", None)
    except DatabaseError:  # a type PostgreSQL cannot infer, a name a pooler already holds
        logger.info("statement not prepared; it runs unprepared on this connection",
                    exc_info=True)
        state.off = True
        return None
    state.names[sql] = name
    return name


def fetch_one_alone(sql: str, params, *, using: str = "default") -> tuple | None:
    """Outside a transaction: run one statement (its own transaction, its commit waiting
    for the disk as usual) and return its first row. Its values are bound by the server
    and the statement prepared there (psycopg's own prepared statements) where it can
    be; else it runs as `execute` runs it."""
    connection = connections[using]
    cursor = _server_bound_cursor(connection)
    if cursor is not None:
        try:
            cursor.execute(sql, params)
            # Django's errors as its wrapper's fetchone gives them, without the wrapper
            # building a wrapped method for each call (a step reads one row per
            # statement, docs/performance.md)
            with connection.wrap_database_errors:
                return cursor.cursor.fetchone()
        except DatabaseError as exc:
            if getattr(exc.__cause__, "sqlstate", None) not in (LOST, TAKEN):
                raise
            _state(connection).off = True  # the failed statement did nothing
            logger.warning("the database connection lost its prepared statements (a pooler "
                           "in transaction mode?); this connection no longer prepares them")
    with connection.cursor() as cursor:
        execute(cursor, sql, params, using=using)
        return cursor.fetchone()


def _server_bound_cursor(connection):
    """A Django-wrapped psycopg cursor on `connection` whose statements are prepared on
    the server, or None: not psycopg 3 on PostgreSQL, inside a transaction, preparing
    switched off, this connection stopped preparing, or Django logs every statement
    (DEBUG, a test capturing them): the text of a statement psycopg ran prepared is not
    there to log, so those run the SQL-level way, whose text is."""
    if not _preparing(connection) or connection.queries_logged:
        return None
    connection.ensure_connection()
    raw = connection.connection
    state = _state(connection)
    if not isinstance(raw, psycopg.Connection) or state.off:
        return None
    if raw.prepare_threshold is None:
        # Django turns psycopg's preparing off (for poolers); turned on here only so that
        # the statements sent with prepare=True are prepared: Django's own cursors bind
        # on the client and never prepare, and this one prepares every statement it runs.
        raw.prepare_threshold = _NEVER
    # As Django wraps its own cursors: its execute wrappers and errors
    connection.validate_thread_sharing()
    # One cursor per connection (and thread, where a connection is shared), kept open:
    # a new one for every statement cost a step more Python than its statement's
    # values, its adapters looked up again each time (docs/performance.md). Each
    # statement's result is read before the next is sent on it.
    thread = threading.get_ident()
    if state.cursor is None or state.thread != thread:
        state.cursor, state.thread = connection.make_cursor(_Preparing(raw)), thread
    return state.cursor


_NEVER = 2**31  # executions before psycopg would prepare a statement by itself


class _Preparing(psycopg.Cursor):
    """Binds a statement's values on the server and prepares every statement it runs."""

    def execute(self, query, params=None, *, prepare=None, binary=None):
        return super().execute(query, params, prepare=True, binary=binary)


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
