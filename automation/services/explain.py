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
from django.utils import timezone

from automation.definitions.conditions import check_condition
from automation.definitions.flow import concurrency_of, debounce_of
from automation.definitions.scope import trigger_scope
from automation.definitions.triggers import trigger_reached
from automation.models import (
    ApiProcess,
    DebounceMark,
    DedupeMark,
    IndexStamp,
    ProcessBreaker,
    ProcessTrigger,
    ProcessVersion,
    Run,
)
from automation.services.dry_run import first_steps
from automation.services.runs import concurrency_key
from automation.store import gates
from entities.exceptions import EntitiesError, ExpressionError, TransitionNotAllowedError
from entities.expressions import PreparedScope, evaluate, evaluate_bool
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
    return [_process(process, triggers.get(process.pk) or _unindexed(process), scopes, entity,
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
                    .values("id", "process_id", "version_id", "position", "type",
                            "entity_type_key", "status_key", "event_type", "condition")):
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
                     "condition": trig.get("condition") or "", "position": None})
    return rows


def _process(process: ProcessRow, triggers: list[dict], scopes: list, entity: Entity, *,
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
        answer["flowControl"] = _flow_control(process, first, entity)
        answer["startsNow"] = not any(note["holdsStart"] for note in answer["flowControl"])
    for entry in checked:
        for internal in ("_scope", "_event", "_row"):
            entry.pop(internal, None)
    return answer


PAUSED = {"code": "paused", "message": "The process is paused (by a person or its circuit "
                                      "breaker): its starts are held until it is resumed."}
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
            entry.update(outcome="starts", event=event.type, _scope=scope, _event=event,
                         _row=row)
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


# -- flow control (docs/user-guide/concurrency.md) ----------------------------------------

def _flow_control(process: ProcessRow, entry: dict, entity: Entity) -> list[dict]:
    """What the process's flow control would do with the start the change triggers, in
    the order the dispatch applies it (automation.triggers.events): a trigger's debounce
    (then its dedupeKey is not asked), else its dedupeKey; then the process's concurrency.
    Each note says whether it holds the start back (`holdsStart`). Read only: no mark or
    gate is taken."""
    definition = (ProcessVersion.objects.filter(pk=process.current_version_id)
                  .values_list("definition", flat=True).first()) or {}
    triggers = definition.get("triggers") or []
    position, event = entry["_row"].get("position"), entry["_event"]
    trigger = triggers[position] if position is not None and position < len(triggers) else {}
    scope = trigger_scope(event)
    notes = []
    debounce = debounce_of(trigger)
    if debounce is not None:
        key = _flow_key(debounce.key, scope) if debounce.key else None
        notes.append(_debounced(entry["_row"]["id"], debounce,
                                key if key is not None else str(event.entity_id or "")))
    elif trigger.get("dedupeKey"):
        key = _flow_key(trigger["dedupeKey"], scope)
        if key is not None:
            notes.append(_deduplicated(entry["_row"]["id"], key))
    rule = concurrency_of(definition)
    if rule is not None and not any(note["holdsStart"] for note in notes):
        notes.append(_concurrency(process, rule, Run(
            process_id=process.pk, input=scope["event"]["data"], parameters={},
            entity=entity, event=event)))
    return [note for note in notes if note is not None]


def _flow_key(source: str, scope: dict) -> str | None:
    try:
        return str(evaluate(source, scope))
    except EntitiesError:  # as the dispatch does: no dedupe, the entity's debounce key
        return None


def _debounced(trigger_id: int, rule, key: str) -> dict:
    note = {"code": "debounced", "mode": rule.mode, "windowMs": rule.window_ms,
            "key": key[:300]}
    if rule.mode == "trailing":
        return {**note, "holdsStart": True, "message": (
            f"Debounced (trailing, {rule.window_ms} ms): no run starts now; one starts "
            "once the key has been quiet for the window, with the latest event.")}
    started = DebounceMark.objects.filter(trigger_id=trigger_id, key=key[:300],
                                          due_at__gt=timezone.now()).first()
    if started is not None:
        return {**note, "holdsStart": True, "runId": str(started.run_id or "") or None,
                "message": (f"Debounced (leading, {rule.window_ms} ms): a run of this key "
                            "started within the window, so this one starts nothing.")}
    return {**note, "holdsStart": False, "message": (
        f"Debounce (leading, {rule.window_ms} ms): this start opens the window; further "
        "events of the key within it start nothing.")}


def _deduplicated(trigger_id: int, key: str) -> dict | None:
    mark = DedupeMark.objects.filter(scope=f"trigger:{trigger_id}", key=key[:300],
                                     expires_at__gt=timezone.now()).first()
    if mark is None:
        return None
    return {"code": "deduplicated", "key": key[:300], "holdsStart": True,
            "runId": str(mark.run_id) if mark.run_id else None,
            "until": mark.expires_at.isoformat(),
            "message": "A duplicate of an earlier event within the dedupe window: it starts "
                       "nothing, and is answered with the run the first one started."}


def _concurrency(process: ProcessRow, rule, run: Run) -> dict | None:
    key = concurrency_key(rule, run)
    reached = gates.full(process.pk, key, rule)
    if reached is None:
        return None
    what, holders, limit = reached
    holding = holders.count()
    note = {"code": "concurrency", "onLimit": rule.on_limit, "key": key, "limit": limit,
            "holding": holding}
    held_by = f"{what}: {holding} {'run holds' if holding == 1 else 'runs hold'} it"
    if rule.on_limit == "cancel-new":
        return {**note, "holdsStart": True,
                "message": f"Cancelled at once (onLimit cancel-new): {held_by}."}
    if rule.on_limit == "cancel-running":
        return {**note, "holdsStart": False, "message": (
            f"Starts, and the oldest run holding the key is cancelled (onLimit "
            f"cancel-running): {held_by}.")}
    return {**note, "holdsStart": True, "message": (
        f"Queued: {held_by}. The run waits as pending, in order, and starts when one of "
        "them ends.")}
