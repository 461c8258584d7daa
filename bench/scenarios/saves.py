"""save_overhead_none / save_overhead_one: what the engine adds to an entity save.

The saves are `entity_update` on existing entities (new data each time, so every save
writes an `entity.updated` event). The baseline is the same saves with the automation
subscriber unsubscribed from the outbox. Blocks of saves alternate engine off / on in
back-to-back pairs; the figure is the median of the per-pair ratios, so drift and other
load on the machine cancel out.

Before the saves, the entity table is filled to ENTITIES rows (half of each type) with one
dispatched `entity.created` event each (bench/bigtables.py), so a query whose cost grows
with the table shows in the figures.
"""

import gc
import itertools
import time

from bench import bigtables, fixtures, profiling
from bench.procs import queue_purge
from bench.stats import median
from entities.models import Entity

PREFIX = "mix"
TARGETS = ("bench-a", "bench-b")
POOL = 200
ENTITIES = 1_000_000
MATCHING = {"type": "event", "config": {"eventType": "entity.updated", "entityType": "bench-b"}}
_counter = itertools.count(1)


def _engine(on: bool) -> None:
    from automation import receivers
    from entities import outbox

    if on:
        receivers.connect()
    else:
        outbox.unsubscribe("automation")


def _settle_db() -> None:
    """Start each block from the same place: no garbage pending, and on SQLite an empty
    write-ahead log (otherwise the block after a write-heavy one pays its checkpoint)."""
    from django.db import connection

    gc.collect()
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _block(entities: list[Entity], n: int) -> tuple[float, float]:
    """(wall, CPU of this process) milliseconds per save over `n` saves."""
    from entities.services import entity_update

    _settle_db()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        # every save goes to the next entity of the whole pool, so no entity is saved
        # more often than the circuit breaker's per-entity minute allows (30 runs)
        k = next(_counter)
        entity_update(entity=entities[k % len(entities)], data={"n": k})
    return (time.perf_counter() - wall) / n * 1000, (time.process_time() - cpu) / n * 1000


def _pairs(entities: list[Entity], n: int, pairs: int) -> list[tuple]:
    """[(off, on), …]: each pair measured back to back, the order flipping every pair
    (off-on, on-off, …) so a trend on the machine hits both sides alike."""
    for engine in (False, True):  # warm caches, connections and the trigger index
        _engine(engine)
        _block(entities, max(20, n // 4))
    measured = []
    for i in range(pairs):
        result = {}
        for engine in ((False, True) if i % 2 == 0 else (True, False)):
            _engine(engine)
            result[engine] = _block(entities, n)
        measured.append((result[False], result[True]))
    _engine(True)
    return measured


def _overhead(measured: list[tuple]) -> dict:
    """Median of the per-pair ratios (robust to other load on the machine)."""
    return {
        "ratio": median([on[0] / off[0] for off, on in measured]),
        "cpu_ratio": median([on[1] / off[1] for off, on in measured]),
        "off_ms": median([off[0] for off, _ in measured]),
        "on_ms": median([on[0] for _, on in measured]),
        "off_range": (min(o[0] for o, _ in measured), max(o[0] for o, _ in measured)),
        "on_range": (min(o[0] for _, o in measured), max(o[0] for _, o in measured)),
    }


def _pool(key: str) -> list[Entity]:
    entity_type = fixtures.entity_type_ensure(key)
    fixtures.entities_bulk(entity_type, POOL)
    return fixtures.entities_of(entity_type, POOL)


def _rows(label: str, result: dict) -> list[tuple[str, str]]:
    off, on = result["off_range"], result["on_range"]
    return [
        (f"{label}: ms per save, engine off / on",
         f"{result['off_ms']:.2f} / {result['on_ms']:.2f}"),
        (f"{label}: block range, engine off / on",
         f"{off[0]:.2f}–{off[1]:.2f} / {on[0]:.2f}–{on[1]:.2f}"),
        (f"{label}: ratio (CPU-time ratio)", f"{result['ratio']:.2f} ({result['cpu_ratio']:.2f})"),
    ]


def run(quick: bool, profile: bool = False) -> dict:
    from automation.models import Run
    from automation.services.processes import process_set_enabled

    n, pairs = (30, 8) if quick else (100, 30)
    pool_a, pool_b = _pool("bench-a"), _pool("bench-b")
    filled = time.perf_counter()
    for pool in (pool_a, pool_b):
        bigtables.entities_fill(pool[0].entity_type, ENTITIES // 2 - POOL)
    filled = time.perf_counter() - filled
    entities = Entity.objects.count()
    fixtures.processes_bulk(PREFIX, 0, 1000, TARGETS)
    one = fixtures.process_create("bench-one", triggers=[MATCHING])
    none = _overhead(_pairs(pool_a, n, pairs))
    if Run.objects.filter(process=one).exists():
        raise AssertionError("a save of bench-a started a run; the mix is wrong")
    matching = _overhead(_pairs(pool_b, n, pairs))
    started = Run.objects.filter(process=one).count()
    expected = pairs * n + max(20, n // 4)
    if started != expected:
        raise AssertionError(f"expected {expected} runs from the matching process, got {started}")
    if profile:
        profiling.cprofile("saves-none", lambda: _block(pool_a, n))
        profiling.cprofile("saves-one", lambda: _block(pool_b, n))
    fixtures.processes_retire(PREFIX)
    process_set_enabled(process=one, enabled=False)
    queue_purge()
    rows = [(f"entity_update, {pairs} pairs of blocks of {n} saves", "1,000 processes configured"),
            ("entities in the table (each with its created event)",
             f"{entities:,} (filled in {filled:.0f} s)")]
    rows += _rows("none matching", none) + _rows("one matching (event + run)", matching)
    figures = {"save_overhead_none": none["ratio"], "save_overhead_one": matching["ratio"],
               "save_entities": entities}
    return {"figures": figures, "rows": rows, "detail": {"none": none, "one": matching}}
