"""The bare django-q2 baselines: a task that does nothing but note when it ran, and a
hand-written chain of tasks that each write one durable row, as the engine's steps do.

A line per task goes to a per-worker file (an append is a few microseconds and touches
neither the database nor the broker, so the no-op baseline stays bare)."""

import os
import time
from functools import lru_cache

from bench.env import VAR

MARKS = VAR / "marks"
CHAIN_TABLE = "bench_chain_row"


def bare(enqueued_at: float = 0.0) -> None:
    started = time.time()
    mark(enqueued_at, started, time.time())


def chain(chain_no: int, step: int, steps: int) -> None:
    """One task of a hand-written durable chain: write this step's row, then enqueue the
    next task of the chain (save=False, as the engine's doorbells). The mark is written
    after the commit, so a chain counts as done only once its last row is durable."""
    from django.db import connection, transaction
    from django_q.tasks import async_task

    started = time.time()
    with transaction.atomic():  # with the ORM broker the next task is queued in it too
        with connection.cursor() as cursor:
            cursor.execute(f"INSERT INTO {CHAIN_TABLE} (chain_no, step) VALUES (%s, %s)",  # noqa: S608
                           [chain_no, step])
        if step < steps:
            async_task("bench.tasks.chain", chain_no, step + 1, steps, broker=_broker(),
                       save=False)
    mark(0.0, started, time.time())


def chain_table_reset() -> None:
    """The chain's table, empty (created on first use; a bench database is its own)."""
    from django.db import connection

    key = "BIGSERIAL" if connection.vendor == "postgresql" else "INTEGER"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE IF NOT EXISTS {CHAIN_TABLE} (id {key} PRIMARY KEY, "
                       "chain_no INTEGER NOT NULL, step INTEGER NOT NULL)")
        cursor.execute(f"DELETE FROM {CHAIN_TABLE}")  # noqa: S608


def chain_rows() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {CHAIN_TABLE}")  # noqa: S608
        return cursor.fetchone()[0]


@lru_cache(maxsize=1)
def _broker():
    """One broker client per worker process, as the engine's doorbell keeps one."""
    from django_q.brokers import get_broker

    return get_broker()


def mark(enqueued_at: float, started: float, finished: float) -> None:
    with open(MARKS / f"bare-{os.getpid()}.txt", "a") as out:
        out.write(f"{enqueued_at:.6f} {started:.6f} {finished:.6f}\n")


def marks_reset() -> None:
    MARKS.mkdir(parents=True, exist_ok=True)
    for path in MARKS.glob("bare-*.txt"):
        path.unlink()


def marks_read() -> list[tuple[float, float, float]]:
    rows = []
    for path in MARKS.glob("bare-*.txt"):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3:
                rows.append((float(parts[0]), float(parts[1]), float(parts[2])))
    return rows


def marks_count() -> int:
    total = 0
    for path in MARKS.glob("bare-*.txt"):
        with open(path, "rb") as handle:
            total += sum(1 for _ in handle)
    return total
