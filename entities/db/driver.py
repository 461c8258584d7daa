"""Statements sent on SQLite's own driver handle, past Django's cursor.

A statement compiled once (entities.db.compiled) is still, on each run through
Django's cursor, a new driver cursor, the execute wrappers, and its `%s` placeholders
rewritten to SQLite's `?` by a regular expression over the whole text: for the run's
INSERT, thirty-odd columns long, that cost more Python than SQLite spent writing the
row (docs/performance.md, "Saves that start a run on SQLite: the engine's statements
on the driver's handle"). Here the `?` form is made once per text and the statement
sent on the connection's own handle, whose statement cache keeps it prepared.

What stays as Django's cursor has it: the driver's errors become Django's (an
`IntegrityError` is Django's), a statement is refused in a transaction Django has
marked for rollback, and the statement belongs to whatever transaction the connection
is in. What does not: no execute wrapper sees it. Where Django logs every statement
(DEBUG, a test capturing them) it goes through Django's cursor after all, so the log
is whole. Only for statements whose text holds no `%` but its placeholders (compiled
SQL: quoted names and placeholders).
"""

from contextlib import contextmanager
from functools import lru_cache

from django.db import connections


def execute(sql: str, params, *, using: str):
    """Run `sql` (Django's `%s` placeholders) with `params` on the SQLite connection
    `using`; returns the driver's cursor (its rowcount, lastrowid, rows)."""
    text = _qmark(sql)
    connection = connections[using]
    if connection.queries_logged:  # Django's cursor, whose log this is
        cursor = connection.cursor()
        cursor.execute(sql, params)
        return cursor
    connection.validate_no_broken_transaction()
    connection.ensure_connection()
    with connection.wrap_database_errors:
        return connection.connection.execute(text, params)


@lru_cache(maxsize=64)
def _qmark(sql: str) -> str:
    if "%" in sql.replace("%s", ""):
        raise ValueError("only placeholders may hold a %: run it through Django's cursor")
    return sql.replace("%s", "?")


def owns_transactions(using: str) -> bool:
    """Whether `transaction` may run on `using`: SQLite, in autocommit with no Django
    transaction open, and no statement log to keep whole (DEBUG, a test capturing
    statements: BEGIN and COMMIT sent here would be missing from it)."""
    connection = connections[using]
    return (connection.vendor == "sqlite" and not connection.in_atomic_block
            and not connection.queries_logged and connection.get_autocommit())


@contextmanager
def transaction(*, using: str):
    """`BEGIN IMMEDIATE` … `COMMIT` on the driver's handle around the statements sent
    with `execute` in the block; `ROLLBACK` if it raises. Only where `owns_transactions`
    says so. It is the transaction Django's `atomic` opens on SQLite (our
    `transaction_mode` is IMMEDIATE: the write lock taken at BEGIN, so two writers never
    deadlock upgrading a read lock), without its bookkeeping around two statements: a
    set_autocommit each way, Django's cursor for the BEGIN, the on-commit machinery:
    54 Python calls and about 0.1 ms of CPU on the API trigger (docs/performance.md,
    "The API trigger on SQLite: the least a trigger can cost"). Nothing may run
    on-commit callbacks in it: Django does not know it is open (`transaction.on_commit`
    would run them at once, before the COMMIT)."""
    connection = connections[using]
    if not owns_transactions(using):
        raise RuntimeError("driver.transaction: only outside Django's transactions, on SQLite")
    raw = connection.connection
    with connection.wrap_database_errors:
        raw.execute("BEGIN IMMEDIATE")
    try:
        yield
        with connection.wrap_database_errors:
            raw.execute("COMMIT")
    except BaseException:
        if raw.in_transaction:
            with connection.wrap_database_errors:
                raw.execute("ROLLBACK")
        raise
