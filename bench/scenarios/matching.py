"""match_flatness: what matching one event costs with 10,000 processes vs 10."""

import time

from bench import fixtures
from bench.stats import median, ratio
from entities.models import Entity, EntityEvent

PREFIX = "flat"
TARGETS = ("bench-a", "bench-b")


def _stream(entity: Entity) -> list[EntityEvent]:
    """An entity update, a status change and a published event (none matches)."""
    snapshot = {"id": str(entity.pk), "type": "bench-a", "reference": entity.reference,
                "status": "new", "data": {"n": 1}, "version": 2, "unmetRequirements": []}
    common = {"entity_id": entity.pk, "entity_type_key": "bench-a", "snapshot": snapshot,
              "source": "entity"}
    return [
        EntityEvent(pk=1, type="entity.updated", from_status="new", to_status="new",
                    entered_statuses=[], changed_fields=["n"], **common),
        EntityEvent(pk=2, type="entity.status_changed", from_status="new", to_status="done",
                    entered_statuses=["done"], changed_fields=["status"], **common),
        EntityEvent(pk=3, type="partner.999.created", data={"total": 1}, source="api"),
    ]


def _per_event_us(call, events: list[EntityEvent], rounds: int, repeats: int = 7) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(rounds):
            for event in events:
                call(event)
        samples.append((time.perf_counter() - started) / (rounds * len(events)) * 1e6)
    return median(samples)


def _measure(events: list[EntityEvent], rounds: int) -> dict:
    from automation.triggers import events as event_triggers

    idx = event_triggers.current()
    return {
        "index": idx,
        "handle_us": _per_event_us(event_triggers.handle_event, events, max(1, rounds // 10)),
        "matched": sum(len(idx.match(e)) for e in events),
        "entries": sum(map(len, idx.by_event.values())) + sum(map(len, idx.by_status.values())),
    }


def _match_us(small, large, events: list[EntityEvent], rounds: int) -> tuple[float, float]:
    """Both indexes timed in turn, repeat after repeat, so a change in what else the
    machine does lands on both; the fastest repeat of each (timeit's rule: the slower
    ones measured the machine, not the code)."""
    samples: dict[int, list[float]] = {0: [], 1: []}
    for _ in range(15):
        for side, idx in enumerate((small, large)):
            started = time.perf_counter()
            for _ in range(rounds):
                for event in events:
                    idx.match(event)
            samples[side].append((time.perf_counter() - started) / (rounds * len(events)) * 1e6)
    return min(samples[0]), min(samples[1])


def run(quick: bool) -> dict:
    a = fixtures.entity_type_ensure("bench-a")
    fixtures.entity_type_ensure("bench-b")
    fixtures.entities_bulk(a, 1)
    events = _stream(Entity.objects.filter(entity_type=a).first())
    rounds = 1000 if quick else 5000
    fixtures.processes_bulk(PREFIX, 0, 10, TARGETS)
    small = _measure(events, rounds)
    fixtures.processes_bulk(PREFIX, 10, 10_000, TARGETS)
    large = _measure(events, rounds)
    small["match_us"], large["match_us"] = _match_us(small["index"], large["index"], events,
                                                     rounds)
    fixtures.processes_retire(PREFIX)
    if small["matched"] or large["matched"]:
        raise AssertionError("a flatness event matched a process; the mix is wrong")
    figure = ratio(large["match_us"], small["match_us"])
    rows = [
        ("index.match per event, 10 processes", f"{small['match_us']:.2f} µs"),
        ("index.match per event, 10,000 processes", f"{large['match_us']:.2f} µs"),
        ("handle_event (no run) per event, 10 processes", f"{small['handle_us']:.2f} µs"),
        ("handle_event (no run) per event, 10,000 processes", f"{large['handle_us']:.2f} µs"),
        ("handle_event ratio 10,000 / 10", f"{ratio(large['handle_us'], small['handle_us']):.2f}"),
    ]
    return {"figures": {"match_flatness": figure}, "rows": rows,
            "detail": {side: {k: v for k, v in d.items() if k != "index"}
                       for side, d in (("small", small), ("large", large))}}
