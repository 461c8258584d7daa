"""match_flatness: what deciding which processes an event starts costs with 100,000
processes configured vs 10, with events that land in index buckets holding many
processes (whose own conditions then decide); match_flatness_10k: the earlier figure,
index.match with 10,000 processes vs 10 over a stream none of which matches."""

import time

from bench import fixtures
from bench.stats import median, ratio
from entities.models import Entity, EntityEvent

PREFIX = "flat"
TARGETS = ("bench-a", "bench-b")
TENANT_PREFIX = "tenant"
LARGE = 100_000
TENANTS_PER_TYPE = 50  # a tenant's 10 processes are on one of 50 entity types
PARTNER_TYPES = 20
# What each of a tenant's 10 processes reacts to: four statuses, two on updates, one on
# status changes, one on creation, two on a published event type of the tenant's partner
KINDS = (("status", "done"), ("status", "review"), ("status", "shipped"),
         ("status", "cancelled"), ("event", "entity.updated"), ("event", "entity.updated"),
         ("event", "entity.status_changed"), ("event", "entity.created"),
         ("event", "partner"), ("event", "partner"))


def tenant_trigger(i: int) -> dict:
    """Process i of a multi-tenant install: tenant i // 10, its entity type one of 50
    (`bench-a` for every 50th tenant, starting with tenant 0), its condition requiring the
    tenant's own value and then something about the data, which each candidate evaluates."""
    tenant, (kind, what) = i // 10, KINDS[i % 10]
    place = tenant % TENANTS_PER_TYPE
    entity_type = "bench-a" if place == 0 else f"m-{place}"
    if what == "partner":
        partner = f"partner.{tenant % PARTNER_TYPES}.created"
        return {"type": "event", "config": {"eventType": partner},
                "condition": f'event.data.tenant == "t{tenant}" && event.data.total > 100'}
    condition = f'entity.data.tenant == "t{tenant}" && entity.data.total > 100'
    if kind == "status":
        return {"type": "status", "config": {"entityType": entity_type, "status": what},
                "condition": condition}
    return {"type": "event", "config": {"eventType": what, "entityType": entity_type},
            "condition": condition}


def _stream(entity: Entity, data: dict | None = None,
            published: tuple[str, dict] = ("partner.999.created", {"total": 1})
            ) -> list[EntityEvent]:
    """An update of bench-a's `entity` (its data `data`), its status change (new → done)
    and a published event (type, data). With the defaults (match_flatness_10k) none
    matches."""
    data = {"n": 1} if data is None else data
    snapshot = {"id": str(entity.pk), "type": "bench-a", "reference": entity.reference,
                "status": "new", "data": data, "version": 2, "unmetRequirements": []}
    common = {"entity_id": entity.pk, "entity_type_key": "bench-a", "snapshot": snapshot,
              "source": "entity"}
    return [
        EntityEvent(pk=1, type="entity.updated", from_status="new", to_status="new",
                    entered_statuses=[], changed_fields=sorted(data), **common),
        EntityEvent(pk=2, type="entity.status_changed", from_status="new", to_status="done",
                    entered_statuses=["done"], changed_fields=["status"], **common),
        EntityEvent(pk=3, type=published[0], data=published[1], source="api"),
    ]


def _tenant_stream(entity: Entity) -> list[EntityEvent]:
    """Tenant 0's update, status change and partner event: each lands in buckets of
    hundreds of processes at 100,000 (the update's holds 400, the partner event's 1,000)
    and has the same two candidates, tenant 0's, at either size; their conditions are
    false (total is 1), so nothing starts and each skip is kept, as in production."""
    data = {"tenant": "t0", "total": 1}
    return _stream(entity, data, ("partner.0.created", data))


def _tenants(entity: Entity, rounds: int) -> dict:
    """10 processes (tenant 0's), then 100,000 (10,000 tenants) of the same spread."""
    from automation.triggers import events as event_triggers
    from automation.triggers.events import starts_and_skips

    fixtures.definition_validate({"steps": fixtures.steps_chain(1),
                                  "triggers": [tenant_trigger(i) for i in range(20)]})
    stream = _tenant_stream(entity)
    fixtures.processes_write(TENANT_PREFIX, range(10), tenant_trigger, fixtures.steps_chain(1))
    small = event_triggers.current()
    filled = time.perf_counter()
    for first in range(10, LARGE, 20_000):
        fixtures.processes_write(TENANT_PREFIX, range(first, min(LARGE, first + 20_000)),
                                 tenant_trigger, fixtures.steps_chain(1))
    large = event_triggers.current()
    filled = time.perf_counter() - filled
    outcomes = [[starts_and_skips(e, idx) for e in stream] for idx in (small, large)]
    for starts, skipped in outcomes[0] + outcomes[1]:
        if starts or len(skipped) != 2:
            raise AssertionError("each tenant event must have exactly tenant 0's two "
                                 "triggers as candidates, both skipped")
    # what handle_event decides before it writes anything: the candidates, their
    # conditions, the starts and skips
    small_us, large_us = _paired_us(starts_and_skips, small, large, stream,
                                    max(1, rounds // 5))
    unkeyed_us = _unkeyed_us(large, stream)
    fixtures.processes_retire(TENANT_PREFIX)
    return {"small_us": small_us, "large_us": large_us, "fill_s": filled,
            "unkeyed_us": unkeyed_us,
            "bucket": len(large.by_event[("entity.updated", "bench-a")].keyed.get(
                ("entity", "data", "tenant"), {})) * 2}


def _unkeyed_us(large, events: list[EntityEvent]) -> float:
    """The same decision on the 100,000-process index with every trigger a candidate of
    its bucket (the index before conditions were keyed): what keying saves. Few rounds:
    each event evaluates hundreds of conditions."""
    from automation.triggers.events import Bucket, TriggerIndex, starts_and_skips

    def unkeyed(buckets: dict) -> dict:
        flat = {}
        for key, bucket in buckets.items():
            flat[key] = Bucket()
            flat[key].plain = bucket.plain + [entry for by_text in bucket.keyed.values()
                                              for entries in by_text.values()
                                              for entry in entries]
        return flat

    index = TriggerIndex(large.generation, unkeyed(large.by_status), unkeyed(large.by_event))
    samples = []
    for _ in range(3):
        started = time.perf_counter()
        for event in events:
            starts_and_skips(event, index)
        samples.append((time.perf_counter() - started) / len(events) * 1e6)
    return min(samples)


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
        "buckets": len(idx.by_event) + len(idx.by_status),
    }


def _paired_us(call, small, large, events: list[EntityEvent], rounds: int
               ) -> tuple[float, float]:
    """`call(event, index)` per event on both indexes in turn, repeat after repeat, so a
    change in what else the machine does lands on both; the fastest repeat of each
    (timeit's rule: the slower ones measured the machine, not the code)."""
    samples: dict[int, list[float]] = {0: [], 1: []}
    for _ in range(15):
        for side, idx in enumerate((small, large)):
            started = time.perf_counter()
            for _ in range(rounds):
                for event in events:
                    call(event, idx)
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
    small["match_us"], large["match_us"] = _paired_us(
        lambda event, idx: idx.match(event), small["index"], large["index"], events, rounds)
    fixtures.processes_retire(PREFIX)
    if small["matched"] or large["matched"]:
        raise AssertionError("a flatness event matched a process; the mix is wrong")
    tenants = _tenants(Entity.objects.filter(entity_type=a).first(), rounds)
    figure = ratio(tenants["large_us"], tenants["small_us"])
    rows = [
        ("decide per event (candidates, conditions, skips), 10 processes",
         f"{tenants['small_us']:.2f} µs"),
        (f"the same, {LARGE:,} processes (update bucket {tenants['bucket']} processes; "
         f"written in {tenants['fill_s']:.0f} s)", f"{tenants['large_us']:.2f} µs"),
        ("the same, 100,000 processes, every trigger a candidate of its bucket (unkeyed)",
         f"{tenants['unkeyed_us']:,.0f} µs"),
        ("match_flatness (100,000 / 10)", f"{figure:.2f}"),
        ("index.match per event, 10 processes", f"{small['match_us']:.2f} µs"),
        ("index.match per event, 10,000 processes", f"{large['match_us']:.2f} µs"),
        ("handle_event (no run) per event, 10 processes", f"{small['handle_us']:.2f} µs"),
        ("handle_event (no run) per event, 10,000 processes", f"{large['handle_us']:.2f} µs"),
        ("handle_event ratio 10,000 / 10", f"{ratio(large['handle_us'], small['handle_us']):.2f}"),
        ("match_flatness_10k (10,000 / 10, no event matches)",
         f"{ratio(large['match_us'], small['match_us']):.2f}"),
    ]
    return {"figures": {"match_flatness": figure,
                        "match_flatness_10k": ratio(large["match_us"], small["match_us"])},
            "rows": rows,
            "detail": {side: {k: v for k, v in d.items() if k != "index"}
                       for side, d in (("small", small), ("large", large))}}
