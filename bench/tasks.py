"""The bare django-q2 baseline: a task that does nothing but note when it ran.

A line per task goes to a per-worker file (an append is a few microseconds and touches
neither the database nor the broker, so the baseline stays bare)."""

import os
import time

from bench.env import VAR

MARKS = VAR / "marks"


def bare(enqueued_at: float = 0.0) -> None:
    started = time.time()
    with open(MARKS / f"bare-{os.getpid()}.txt", "a") as out:
        out.write(f"{enqueued_at:.6f} {started:.6f} {time.time():.6f}\n")


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
