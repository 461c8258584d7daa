"""Commits that need not wait for the disk.

PostgreSQL's COMMIT normally returns once the transaction is flushed to its write-ahead
log. `synchronous_commit = off` for one transaction returns as soon as it is written:
it is still atomic and visible to everyone at once; what is given up is that a crash of
the database server (not of our process) in the next fraction of a second could forget
it. That is the right trade only for writes that are done again when forgotten (an
event's dispatch: the sweeper dispatches it again), and only until someone outside is
told of them: any later ordinary commit flushes everything written before it too.
SQLite in WAL mode with synchronous=NORMAL, our default there, makes the same trade for
every commit, so nothing is done on SQLite.
"""

from django.conf import settings
from django.db import connections

from entities.db import prepared

SQL = "SET LOCAL synchronous_commit = off"


def relaxed(using: str = "default") -> bool:
    """Whether commits on `using` may skip the flush (PostgreSQL, and not switched off
    with ENTITYFLOW_RELAXED_COMMITS = False)."""
    return (connections[using].vendor == "postgresql"
            and getattr(settings, "ENTITYFLOW_RELAXED_COMMITS", True))


def commit_without_flush(using: str = "default") -> None:
    """Inside a transaction: let its COMMIT return before the flush (see above)."""
    if relaxed(using):
        with connections[using].cursor() as cursor:
            cursor.execute(SQL)


def execute_alone(cursor, sql: str, params, *, using: str = "default",
                  durable: bool = False, prepare: bool = False) -> None:
    """Outside a transaction: run one statement, its own transaction, whose commit does
    not wait for the disk unless `durable`. SET LOCAL and the statement sent as one query
    form one implicit transaction, so the setting holds for that statement alone; its
    result is the cursor's current one. `prepare`: a statement run again and again is
    planned once per connection (entities.db.prepared)."""
    def send(cursor, sql: str, params) -> None:
        if not durable and relaxed(using):
            cursor.execute(f"{SQL}; {sql}", params)
            cursor.nextset()
        else:
            cursor.execute(sql, params)

    if prepare:
        prepared.execute(cursor, sql, params, using=using, send=send)
    else:
        send(cursor, sql, params)
