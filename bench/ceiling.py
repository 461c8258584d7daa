"""The machine's ceiling for durable step records: how many one-statement commits per
second two processes get from the bench's database when each commit waits for the disk
(PostgreSQL's default `synchronous_commit = on`; SQLite as the project configures it).

A context row, not a goal: a step's record is such a commit (an UPDATE of the step and
an INSERT of its successor, store.postgresql), so the engine's step rate can never pass
this rate divided by the flushed commits a step needs (docs/performance.md).
"""

import multiprocessing
import time

TABLE_ROWS = "bench_ceiling_row"
TABLE_LOG = "bench_ceiling_log"
PROCESSES = 2


def commits_per_s(seconds: float) -> float:
    """Durable commits/s of PROCESSES processes, each updating a row of its own and
    inserting one row per commit, for `seconds`, as the engine's record does."""
    from django.db import connection, connections

    _tables_reset(connection)
    connections.close_all()  # each forked process opens its own connection
    context = multiprocessing.get_context("fork")
    counts = context.Queue()
    start = time.time() + 0.5  # every process starts its clock at the same moment
    procs = [context.Process(target=_commit_loop, args=(n + 1, start, seconds, counts))
             for n in range(PROCESSES)]
    for proc in procs:
        proc.start()
    total = sum(counts.get(timeout=seconds + 60) for _ in procs)
    for proc in procs:
        proc.join(30)
    return total / seconds


def _tables_reset(connection) -> None:
    key = "BIGSERIAL" if connection.vendor == "postgresql" else "INTEGER"
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {TABLE_ROWS}")
        cursor.execute(f"DROP TABLE IF EXISTS {TABLE_LOG}")
        cursor.execute(f"CREATE TABLE {TABLE_ROWS} (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
        cursor.execute(f"CREATE TABLE {TABLE_LOG} (id {key} PRIMARY KEY, "
                       "row_id INTEGER NOT NULL)")
        cursor.executemany(f"INSERT INTO {TABLE_ROWS} (id, n) VALUES (%s, 0)",  # noqa: S608
                           [(n + 1,) for n in range(PROCESSES)])


def _commit_loop(row: int, start: float, seconds: float, counts) -> None:
    from django.db import connection, transaction

    done = 0
    try:
        while time.time() < start:
            time.sleep(0.001)
        end = start + seconds
        with connection.cursor() as cursor:
            while time.time() < end:
                if connection.vendor == "postgresql":  # one statement, its own transaction
                    cursor.execute(
                        f"WITH u AS (UPDATE {TABLE_ROWS} SET n = n + 1 WHERE id = %s "  # noqa: S608
                        f"RETURNING id) INSERT INTO {TABLE_LOG} (row_id) SELECT id FROM u",
                        [row])
                else:  # SQLite cannot write in a WITH clause: two statements, one commit
                    with transaction.atomic():
                        cursor.execute(f"UPDATE {TABLE_ROWS} SET n = n + 1 WHERE id = %s",  # noqa: S608
                                       [row])
                        cursor.execute(f"INSERT INTO {TABLE_LOG} (row_id) VALUES (%s)",  # noqa: S608
                                       [row])
                done += 1
    finally:
        counts.put(done)
        connection.close()
