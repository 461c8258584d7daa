"""Explain: what a proposed change to an entity would do, across every process of its
type, without doing it (docs/user-guide/explain.md).

The change is made for real, through the entity services, inside a savepoint that is
always rolled back: the requirements, fallbacks and auto-advances are the ones a real
save meets, and the events it would write are read back before the rollback. Nothing
is dispatched (the outbox is told it is a rehearsal: no subscriber is asked and no
on-commit callback registered), no step runs and no connector is called; the
processes are matched against those events with the same trigger rule and condition
check the dispatch uses.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Count, Max, Subquery

from automation.definitions.conditions import check_condition
from automation.definitions.scope import trigger_scope
from automation.definitions.triggers import trigger_reached
from automation.models import (
    ApiProcess,
    IndexStamp,
    ProcessBreaker,
    ProcessTrigger,
    ProcessVersion,
)
from automation.services.dry_run import first_steps
from entities.exceptions import ExpressionError, TransitionNotAllowedError
from entities.expressions import PreparedScope, evaluate_bool
from entities.models import Entity, EntityEvent
from entities.outbox import rehearsal
from entities.requirements import load_rules
from entities.services import entity_scope, entity_transition, entity_update

FIRST_STEPS = 3
ENTITY_TRIGGERS = ("status", "event")


@dataclass(frozen=True)
class Gate:
    """A reason a process starts nothing whatever its triggers say."""
    code: str
    closed: Callable[["ProcessRow"], bool]
    message: str


# Checked in order; a process paused by its circuit breaker (services.breaker) is one
# more reason, read fresh on every call (PAUSED below): pausing does not change the rows.
GATES = (
    Gate("disabled", lambda process: not process.enabled, "The process is disabled."),
    Gate("no_version", lambda process: process.current_version_id is None,
         "The process has no saved version."),
)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge key by key, null removes a key, anything
    else replaces."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def explain(*, entity: Entity, changes: dict | None = None, status: str | None = None) -> dict:
    """{entity, change, status, transition, requirements, events, processes}.

    Raises EntityDataInvalidError (and the other entity errors) when the patched data
    could not be saved at all; a status the entity may not enter is an answer
    (`transition.allowed` false, with the reasons), not an error."""
    with transaction.atomic(), rehearsal():
        try:
            return _explain(entity.pk, changes, status)
        finally:
            transaction.set_rollback(True)  # always: explain never writes


def _explain(entity_id, changes: dict | None, status: str | None) -> dict:
    entity = Entity.objects.select_related("entity_type").get(pk=entity_id)
    before = {"status": entity.status, "version": entity.version}
    last_event = (EntityEvent.objects.filter(entity=entity).order_by("-id")
                  .values_list("id", flat=True).first() or 0)
    if changes or not status:  # no change at all: what a plain save would do
        entity_update(entity=entity, data=merge_patch(entity.data or {}, changes or {}))
    transition = None
    if status:
        try:
            entity_transition(entity=entity, to_status=status)
            transition = {"to": status, "allowed": True, "reasons": []}
        except TransitionNotAllowedError as exc:
            transition = {"to": status, "allowed": False, "message": exc.message,
                          "reasons": (exc.fields or {}).get("status", [exc.message])}
    events = list(EntityEvent.objects.filter(entity=entity, pk__gt=last_event).order_by("id"))
    entered = [key for event in events for key in event.entered_statuses or ()]
    return {
        "entity": {"id": str(entity.pk), "type": entity.entity_type.key,
                   "reference": entity.reference, "status": before["status"],
                   "version": before["version"]},
        "data": entity.data,
        "status": {"from": before["status"], "to": entity.status, "passesThrough": entered},
        "transition": transition,
        "requirements": _requirements(entity),
        "events": [{"type": e.type, "from": e.from_status, "to": e.to_status,
                    "enteredStatuses": e.entered_statuses, "changedFields": e.changed_fields}
                   for e in events],
        "processes": _processes(entity, events),
    }


def _requirements(entity: Entity) -> list[dict]:
    """Every requirement of the type, for the entity as the change leaves it."""
    scope = entity_scope(entity)
    answer = []
    for status in load_rules(entity.entity_type).statuses.values():
        for rule in status.requirements:
            try:
                holds, reason = evaluate_bool(rule.expression, scope), None
            except ExpressionError as exc:
                holds, reason = False, exc.message
            answer.append({"requirement": rule.name, "status": status.key, "holds": holds,
                           "message": None if holds else rule.message, "reason": reason})
    return answer


@dataclass(frozen=True)
class ProcessRow:
    """What explain reads of a process: a row, not a model (a type may have thousands)."""
    pk: int
    slug: str
    name: str
    enabled: bool
    current_version_id: int | None


def _processes(entity: Entity, events: list[EntityEvent]) -> list[dict]:
    """Every process of the type, checked against the change's events; a condition shared
    by several triggers is evaluated once per event."""
    processes, triggers = _type_processes(entity.entity_type_id)
    scopes = [(event, PreparedScope(trigger_scope(event)), {}) for event in events]
    paused = set(ProcessBreaker.objects.filter(
        paused_at__isnull=False, process__entity_type_id=entity.entity_type_id
    ).values_list("process_id", flat=True))
    return [_process(process, triggers.get(process.pk) or _unindexed(process), scopes,
                     paused=process.pk in paused)
            for process in processes]


_rows: dict[tuple, tuple[list[ProcessRow], dict[int, list[dict]]]] = {}


def _type_processes(entity_type_id: int) -> tuple[list[ProcessRow], dict[int, list[dict]]]:
    """The type's processes and their trigger rows, read again only when one of them
    changed: one small query says whether they did (how many, the latest save, and the
    trigger index's generation, which every trigger change bumps)."""
    stamp = ApiProcess.objects.filter(entity_type_id=entity_type_id).aggregate(
        count=Count("id"), last=Max("updated_at"),
        generation=Max(Subquery(IndexStamp.objects.filter(pk=1).values("generation")[:1])))
    key = (entity_type_id, stamp["count"], stamp["last"], stamp["generation"])
    if key not in _rows:
        processes = [ProcessRow(*row) for row in ApiProcess.objects.filter(
            entity_type_id=entity_type_id).order_by("name", "id").values_list(
            "id", "slug", "name", "enabled", "current_version_id")]
        triggers: dict[int, list[dict]] = {}
        for row in (ProcessTrigger.objects.filter(process__entity_type_id=entity_type_id)
                    .order_by("position", "id")
                    .values("id", "process_id", "version_id", "type", "entity_type_key",
                            "status_key", "event_type", "condition")):
            triggers.setdefault(row["process_id"], []).append(row)
        if len(_rows) > 64:
            _rows.clear()
        _rows[key] = (processes, triggers)
    return _rows[key]


def _unindexed(process: ProcessRow) -> list[dict]:
    """A disabled process has no trigger rows (automation.services.processes): its
    triggers as the rows would hold them, read from its current version."""
    if process.enabled or process.current_version_id is None:
        return []
    definition = (ProcessVersion.objects.filter(pk=process.current_version_id)
                  .values_list("definition", flat=True).first()) or {}
    rows = []
    for trig in definition.get("triggers", []):
        config = trig.get("config") or {}
        rows.append({"id": None, "process_id": process.pk, "type": trig.get("type"),
                     "version_id": process.current_version_id,
                     "entity_type_key": config.get("entityType", ""),
                     "status_key": config.get("status", ""),
                     "event_type": config.get("eventType", ""),
                     "condition": trig.get("condition") or ""})
    return rows


def _process(process: ProcessRow, triggers: list[dict], scopes: list, *,
             paused: bool = False) -> dict:
    reasons = [{"code": gate.code, "message": gate.message}
               for gate in GATES if gate.closed(process)]
    if paused:
        reasons.append(PAUSED)
    checked, starts = [], []
    for row in triggers:
        if row["type"] not in ENTITY_TRIGGERS:
            continue
        entry = _trigger(row, scopes)
        checked.append(entry)
        if entry["outcome"] == "starts":
            starts.append(entry)
    if not checked:
        reasons.append({"code": "no_entity_trigger",
                        "message": "No status or event trigger: entity changes never start it."})
    elif not starts:
        reasons.extend(_why_not(checked))
    would_start = bool(starts) and not any(r["code"] in _GATE_CODES for r in reasons)
    answer = {"process": process.slug, "name": process.name, "enabled": process.enabled,
              "wouldStart": would_start, "reasons": [] if would_start else reasons,
              "triggers": checked, "firstSteps": []}
    if would_start:
        first = starts[0]
        answer["firstSteps"] = first_steps(process.current_version_id, first["_scope"],
                                           limit=FIRST_STEPS)
    for entry in checked:
        entry.pop("_scope", None)
    return answer


PAUSED = {"code": "paused", "message": "The process is paused by its circuit breaker: its "
                                      "starts are held until a person resumes it."}
_GATE_CODES = {gate.code for gate in GATES} | {PAUSED["code"]}


def _trigger(row: dict, scopes: list) -> dict:
    """One trigger against the change's events: the first event that starts it, else
    what the nearest miss was (a condition that failed beats a trigger not reached)."""
    entry = {"id": row["id"], "type": row["type"], "condition": row["condition"] or None}
    if row["type"] == "status":
        entry["status"] = row["status_key"]
    else:
        entry["eventType"] = row["event_type"]
    entry["outcome"], miss = "not_reached", None
    for event, scope, checked in scopes:
        if not trigger_reached(type=row["type"], entity_type_key=row["entity_type_key"],
                               status_key=row["status_key"], event_type=row["event_type"],
                               event=event):
            continue
        check = checked.get(row["condition"])
        if check is None:
            check = checked[row["condition"]] = check_condition(row["condition"], scope,
                                                                with_values=True)
        if check.holds:
            entry.update(outcome="starts", event=event.type, _scope=scope)
            return entry
        miss = {"outcome": "condition_error" if check.error else "condition_false",
                "event": event.type, "seen": check.seen}
        if check.error:
            miss["error"] = check.error
    if miss is not None:
        entry.update(miss)
    return entry


def _why_not(checked: list[dict]) -> list[dict]:
    reasons = []
    for entry in checked:
        what = (f"status '{entry['status']}'" if entry["type"] == "status"
                else f"event '{entry['eventType']}'")
        if entry["outcome"] == "not_reached":
            reason = {"code": "trigger_not_reached",
                      "message": f"The change does not reach the trigger's {what}."}
        elif entry["outcome"] == "condition_false":
            reason = {"code": "condition_false",
                      "message": f"The condition is false: {entry['condition']}",
                      "seen": entry["seen"]}
        else:
            reason = {"code": "condition_error",
                      "message": f"The condition could not be evaluated: {entry['error']}",
                      "seen": entry["seen"]}
        reasons.append({**reason, "trigger": entry["id"]})
    return reasons
