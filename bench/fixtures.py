"""Bench data: entity types, entities, and processes (one by the real service, thousands
in bulk with the same rows the service writes)."""

from django.db import transaction
from django.db.models import OuterRef, Subquery

from automation.models import ApiProcess, ProcessTrigger, ProcessVersion
from automation.services.processes import definition_validate, index_changed, process_save
from automation.triggers import events
from entities.models import Entity, EntityType, Status, Transition

OTHER_TYPES = 50
OTHER_STATUSES = ("received", "approved", "suspended", "closed")


def entity_type_ensure(key: str) -> EntityType:
    """A small type: `new` (initial) -> `done`, plus `never`, a status nothing enters."""
    entity_type, created = EntityType.objects.get_or_create(
        key=key, defaults={"name": key.replace("-", " ").title(), "schema": {}})
    if created:
        rows = {k: Status.objects.create(entity_type=entity_type, key=k, label=k.title(),
                                         is_initial=i == 0, position=i)
                for i, k in enumerate(("new", "done", "never"))}
        Transition.objects.create(entity_type=entity_type, source=rows["new"], target=rows["done"])
    return entity_type


def entities_bulk(entity_type: EntityType, count: int, *, batch: int = 5000) -> None:
    """Make `count` entities of the type exist: rows as entity_create writes them, without
    an event each (setup, not the measurement)."""
    have = Entity.objects.filter(entity_type=entity_type).count()
    for start in range(have, count, batch):
        rows = []
        for i in range(start, min(count, start + batch)):
            entity = Entity(entity_type=entity_type, reference=f"{entity_type.key}-{i:07d}",
                            data={"n": i}, unmet_requirements=[])
            entity.set_initial_status("new")
            rows.append(entity)
        with transaction.atomic():
            Entity.objects.bulk_create(rows)


def entities_of(entity_type: EntityType, count: int) -> list[Entity]:
    return list(Entity.objects.select_related("entity_type")
                .filter(entity_type=entity_type).order_by("reference")[:count])


def steps_chain(length: int, function: str = "noop") -> list[dict]:
    ids = [f"s{i + 1}" for i in range(length)]
    return [{"type": "function", "function": function, "id": sid,
             **({"next": ids[i + 1]} if i + 1 < length else {})}
            for i, sid in enumerate(ids)]


def process_create(slug: str, *, steps: int = 1, triggers: list | None = None,
                   entity_type: EntityType | None = None, function: str = "noop",
                   **more) -> ApiProcess:
    """Through the real service (validation, version, trigger rows, index stamp); `more`
    adds top-level keys to the definition (`concurrency`)."""
    definition = {"steps": steps_chain(steps, function),
                  "triggers": triggers or [{"type": "manual"}], **more}
    return process_save(slug=slug, name=slug, definition=definition, entity_type=entity_type)


def mix_trigger(i: int, targets: tuple[str, ...]) -> dict:
    """A realistic spread of triggers, none of which matches a save of `targets` entities:
    40 % status triggers on other types, 20 % on a status of `targets` nothing enters,
    20 % entity-event triggers scoped to other types, 20 % published event types."""
    kind, other = i % 10, f"other-{i % OTHER_TYPES}"
    if kind < 4:
        return {"type": "status", "config": {"entityType": other, "status": OTHER_STATUSES[i % 4]}}
    if kind < 6:
        target = targets[i % len(targets)]
        return {"type": "status", "config": {"entityType": target, "status": "never"}}
    if kind < 8:
        event_type = ("entity.updated", "entity.created", "entity.status_changed")[i % 3]
        return {"type": "event", "config": {"eventType": event_type, "entityType": other}}
    return {"type": "event", "config": {"eventType": f"partner.{i % 200}.created"}}


def processes_bulk(prefix: str, start: int, stop: int, targets: tuple[str, ...]) -> None:
    """`stop - start` enabled processes with mix triggers, written in bulk; each
    definition shape is validated by the real validator once."""
    steps = steps_chain(1)
    definition_validate({"steps": steps, "triggers": [mix_trigger(i, targets) for i in range(10)]})
    processes_write(prefix, range(start, stop), lambda i: mix_trigger(i, targets), steps)


def processes_write(prefix: str, numbers, trigger, steps: list[dict], *,
                    entity_type=None) -> None:
    """One enabled process per number in `numbers` (`<prefix>-<n>`, of `entity_type` if
    given) with `steps` and the one trigger `trigger(n)`, written in bulk with their index
    rows; the caller validates the shapes it uses."""
    numbers = list(numbers)
    with transaction.atomic():
        procs = ApiProcess.objects.bulk_create(
            [ApiProcess(slug=f"{prefix}-{i}", name=f"{prefix} {i}", entity_type=entity_type)
             for i in numbers], batch_size=1000)
        triggers = {p.pk: trigger(i) for i, p in zip(numbers, procs, strict=True)}
        versions = ProcessVersion.objects.bulk_create(
            [ProcessVersion(process=p, number=1,
                            definition={"steps": steps, "triggers": [triggers[p.pk]]})
             for p in procs], batch_size=1000)
        ApiProcess.objects.filter(pk__in=[p.pk for p in procs]).update(current_version=Subquery(
            ProcessVersion.objects.filter(process=OuterRef("pk")).values("pk")[:1]))
        rows = []
        for p, v in zip(procs, versions, strict=True):
            config = triggers[p.pk].get("config", {})
            rows.append(ProcessTrigger(
                process=p, version=v, position=0, type=triggers[p.pk]["type"],
                entity_type_key=config.get("entityType", ""), status_key=config.get("status", ""),
                event_type=config.get("eventType", ""),
                condition=triggers[p.pk].get("condition", ""), config=config))
        ProcessTrigger.objects.bulk_create(rows, batch_size=1000)
        index_changed()
    events.invalidate()


def processes_retire(prefix: str) -> None:
    """Take a bulk set out of every trigger index (their rows stay for history)."""
    with transaction.atomic():
        ProcessTrigger.objects.filter(process__slug__startswith=f"{prefix}-").delete()
        ApiProcess.objects.filter(slug__startswith=f"{prefix}-").update(enabled=False)
        index_changed()
    events.invalidate()
