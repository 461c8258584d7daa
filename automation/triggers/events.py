"""Status and event triggers, and the dispatch of entity events to them.

Which processes does an event start? An in-memory index keyed by what events carry
((event type, entity type or ""); (entity type, entered status)), so matching is a few
dictionary lookups whatever the number of processes. Within such a bucket, a trigger
whose condition requires one field to equal a text (`entity.data.region == "eu" && …`)
is filed under that text, so only the triggers whose condition can hold are candidates
and have their condition evaluated (docs/user-guide/triggers.md#many-processes). Each
process rebuilds it when the shared generation stamp moves (checked at most once a
second) or at once after a local change."""

import logging
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from django.db.models import F

from automation.definitions.flow import Debounce, debounce_of
from automation.definitions.scope import trigger_scope
from automation.triggers.conditions import condition_skip_reason
from entities.exceptions import EntitiesError
from entities.expressions import evaluate
from entities.models import EntityEvent
from entities.outbox import Offer, event_record_skipped

STAMP_CHECK_SECONDS = 1.0
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    trigger_id: int
    process_id: int
    version_id: int
    type: str
    condition: str
    entity_type_key: str
    version: object = None  # the ProcessVersion (immutable) with its process, preloaded
    dedupe_key: str | None = None  # the trigger's dedupeKey (CEL) and its window
    dedupe_window_ms: int | None = None
    debounce: Debounce | None = None  # the trigger's debounce rule


# `<path> == "<text>"`, alone or first of `&&`-joined parts: the condition cannot hold
# unless the value at <path> is that text. Only when the condition has no `||` or `?:`,
# which bind looser than `&&` and could make it hold without that part (checked on the
# whole source, quotes included: a condition that merely mentions them is not keyed).
_KEYED = re.compile(r"""\s*((?:entity|event|input)(?:\.[A-Za-z_]\w*)+)\s*==\s*"""
                    r"""(?:"([^"\\']*)"|'([^"\\']*)')\s*(?:&&|$)""")


def condition_key(condition: str) -> tuple[tuple[str, ...], str] | None:
    """(path, text) when `condition` can hold only if the scope's value at path is the
    text (a str: a value of another type makes the comparison false or an error)."""
    if not condition or "||" in condition or "?" in condition:
        return None
    found = _KEYED.match(condition)
    if found is None:
        return None
    text = found.group(2) if found.group(2) is not None else found.group(3)
    return tuple(found.group(1).split(".")), text


class Bucket:
    """The triggers of one index key: `plain` are candidates for every event of the key;
    `keyed[path][text]` only for an event whose scope has that text at path, or has no
    text there at all (then every keyed trigger's condition is evaluated, and reports its
    error as a skip, docs/user-guide/triggers.md#skipped-triggers)."""

    __slots__ = ("plain", "keyed")

    def __init__(self):
        self.plain: list[Entry] = []
        self.keyed: dict[tuple[str, ...], dict[str, list[Entry]]] = {}

    def add(self, entry: Entry) -> None:
        key = condition_key(entry.condition)
        if key is None:
            self.plain.append(entry)
        else:
            self.keyed.setdefault(key[0], {}).setdefault(key[1], []).append(entry)

    def candidates(self, found: list[Entry], scope: dict) -> None:
        found.extend(self.plain)
        for path, by_text in self.keyed.items():
            value = _value_at(scope, path)
            if isinstance(value, str):  # the other texts' conditions are false
                found.extend(by_text.get(value, ()))
            else:  # absent, or not a text: evaluated, so each says why (an error) as before
                for entries in by_text.values():
                    found.extend(entries)


def _value_at(scope: dict, path: tuple[str, ...]):
    value = scope
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


class TriggerIndex:
    """Keyed as automation.definitions.triggers.trigger_reached decides, one event at a time.
    `by_event[(event_type, entity_type_key)]`: an event trigger scoped to an entity type
    is filed under that type, an unscoped one under ""; `by_status[(entity_type_key,
    status)]`. An event looks up only its own keys, never a list of other types' triggers,
    and within them only the triggers whose keyed condition its scope can satisfy."""

    def __init__(self, generation: int, by_status: dict, by_event: dict):
        self.generation = generation
        self.by_status = by_status
        self.by_event = by_event

    def _buckets(self, event: EntityEvent) -> list[Bucket]:
        buckets = []
        if (bucket := self.by_event.get((event.type, ""))) is not None:
            buckets.append(bucket)
        type_key = event.entity_type_key
        if type_key:
            if (bucket := self.by_event.get((event.type, type_key))) is not None:
                buckets.append(bucket)
            for status in event.entered_statuses or ():
                if (bucket := self.by_status.get((type_key, status))) is not None:
                    buckets.append(bucket)
        return buckets

    def match(self, event: EntityEvent, scope: dict | None = None) -> list[Entry]:
        """The candidates: triggers whose condition `scope` (trigger_scope(event), built
        here when not given) may satisfy; their conditions are still to be checked."""
        found: list[Entry] = []
        buckets = self._buckets(event)
        if buckets:
            scope = trigger_scope(event) if scope is None else scope
            for bucket in buckets:
                bucket.candidates(found, scope)
        return found


_lock = threading.Lock()
_state = {"index": None, "checked": 0.0}


def _build() -> TriggerIndex:
    from automation.models import IndexStamp, ProcessTrigger, ProcessVersion

    generation = IndexStamp.objects.filter(pk=1).values_list("generation", flat=True).first() or 0
    by_status, by_event = defaultdict(Bucket), defaultdict(Bucket)
    rows = list(
        ProcessTrigger.objects.filter(process__enabled=True, type__in=["status", "event"]).values(
            "id",
            "process_id",
            "version_id",
            "type",
            "condition",
            "entity_type_key",
            "status_key",
            "event_type",
            "position",
        )
    )
    versions = ProcessVersion.objects.select_related("process").in_bulk(
        {r["version_id"] for r in rows}
    )
    for row in rows:
        version = versions[row["version_id"]]
        trigger = version.definition["triggers"][row["position"]]
        entry = Entry(row["id"], row["process_id"], row["version_id"], row["type"],
                      row["condition"], row["entity_type_key"], version,
                      trigger.get("dedupeKey"), trigger.get("dedupeWindowMs"),
                      debounce_of(trigger))
        if row["type"] == "status":
            by_status[(row["entity_type_key"], row["status_key"])].add(entry)
        else:
            by_event[(row["event_type"], row["entity_type_key"])].add(entry)
    return TriggerIndex(generation, dict(by_status), dict(by_event))


def current() -> TriggerIndex:
    from automation.models import IndexStamp

    now = time.monotonic()
    index = _state["index"]
    if index is not None and now - _state["checked"] < STAMP_CHECK_SECONDS:
        return index
    with _lock:
        generation = (
            IndexStamp.objects.filter(pk=1).values_list("generation", flat=True).first() or 0
        )
        if index is None or index.generation != generation:
            index = _state["index"] = _build()
        _state["checked"] = now
    return index


def invalidate() -> None:
    _state["index"] = None


def is_interesting(event: EntityEvent) -> bool:
    return bool(current().match(event))


@dataclass(frozen=True)
class Prepared:
    """The one run an event starts, checked and built before the dispatch's transaction
    (event_prepare); it stands while this process's index is the one it was matched on."""
    index: TriggerIndex
    rows: tuple


def event_prepare(event: EntityEvent) -> Prepared | None:
    """The common case (one process started, nothing skipped, no dedupe or debounce)
    made ready outside the dispatch's transaction: the matching, the circuit breaker's
    reads and the unsaved rows, so that inside it (on SQLite: under the one write lock
    every worker's claim waits on) only the writes are left (entities.outbox.subscribe;
    docs/performance.md "First step on SQLite"). None: handle_event does it all."""
    from automation.services.runs import run_start_prepare

    index = current()
    start = _one_start(event, index)
    if start is None:
        return None
    rows = run_start_prepare(**start)
    return Prepared(index, rows) if rows is not None else None


def event_with_save(event: EntityEvent) -> Callable[[EntityEvent], bool] | None:
    """The run an event starts, written in the save's own transaction (the outbox's
    `with_save`). Asked before the event's row is written, so decided here without the
    event's id: it starts one process in the plain way (no condition failed, no dedupe,
    no debounce), that process is enabled and has no concurrency rule, and no process
    was changed earlier in this transaction (this process's index learns of that only
    at the commit). `write` then decides again as handle_event would, with the id (the
    condition, the circuit breaker), and writes the run with its first step, or says
    False for the general way.

    Not where the store starts a run in one statement (PostgreSQL): there the outbox
    runs that statement (event_statement) in the save's transaction instead, prepared
    once per connection and sent with its savepoint in one round trip, where this way
    takes the savepoint's two and an INSERT each (measured: more statements and more
    CPU per save, docs/performance.md "Saves that start a run")."""
    from automation.services.processes import index_change_pending
    from automation.services.runs import run_start_prepare, run_start_prepared
    from automation.store import get_store
    from automation.store.graphs import concurrency_for

    if get_store().features.start_in_statement or index_change_pending():
        return None
    index = current()
    start = _one_start(event, index)
    if (start is None or not start["process"].enabled
            or concurrency_for(start["version"].pk) is not None):
        return None

    def write(event: EntityEvent) -> bool:
        start = _one_start(event, index)
        rows = run_start_prepare(**start) if start is not None else None
        if rows is None:
            return False
        run_start_prepared(*rows)
        return True

    return write


def handle_event(event: EntityEvent, prepared: Prepared | None = None) -> list:
    """Start one run per matching process (idempotent per process and event)."""
    from automation.models import ProcessTrigger
    from automation.services.breaker import ProcessPausedError
    from automation.services.debounce import debounce_event
    from automation.services.dedupe import run_start_once
    from automation.services.runs import run_start, run_start_prepared

    if prepared is not None and _state["index"] is prepared.index:
        return [run_start_prepared(*prepared.rows)[0]]
    starts, skipped = starts_and_skips(event)
    for skip in skipped:
        ProcessTrigger.objects.filter(pk=skip["trigger"]).update(
            skipped_count=F("skipped_count") + 1)
    if skipped:  # kept on the event, for its admin page and POST /api/events' answer
        event_record_skipped(event, skipped)
    runs = []
    for start in starts:
        try:
            if "debounce" in start:
                rule, key = start.pop("debounce")
                run, why = debounce_event(rule=rule, key=key, start=start)
                if why is not None:
                    skipped.append({"process": start["process"].slug,
                                    "trigger": start["trigger"]["triggerId"], "reason": why})
                    event_record_skipped(event, skipped)
                    continue
            elif "dedupe" in start:
                run, duplicate = run_start_once(**start)
                if duplicate:
                    skipped.append(_duplicate(start, run))
                    event_record_skipped(event, skipped)
                    continue
            else:
                run = run_start(**start)[0]
        except ProcessPausedError:  # held by the circuit breaker (a HeldStart row), not lost
            continue
        runs.append(run)
    return runs


def waiting_runs_interested(event: EntityEvent) -> bool:
    """Whether some run waits for an event of this type (a waitForEvent step): a set of
    types read at most once a second, no query per save (services.waits)."""
    from automation.services.waits import event_waited_for

    return event_waited_for(event)


def handle_waiting_runs(event: EntityEvent) -> None:
    """Finish the waitForEvent steps whose event this is: only the runs waiting for its
    type are looked at (StepWait, indexed by type), each condition checked in its run's
    scope (docs/user-guide/waits.md)."""
    from automation.services.waits import event_arrived

    event_arrived(event)


def _duplicate(start: dict, run) -> dict:
    """The skip a deduplicated start leaves on its event, naming the run that counts."""
    first = f" (run {run.pk})" if run is not None else ""
    return {"process": start["process"].slug, "trigger": start["trigger"]["triggerId"],
            "reason": f"A duplicate of an earlier event within the dedupe window{first}."}


def event_statement(event: EntityEvent) -> Offer | None:
    """The common case, one process started and no condition that failed (which counts
    a skip), as CTEs of the dispatch's one statement (entities.outbox.subscribe). Asked
    inside the save's transaction: it stands while this process's index is the one it
    was matched on (a process changed in that transaction drops the index at commit).

    The outbox runs it at once, inside the save's transaction, unless a process was
    changed earlier in that transaction (this process's index learns of it only at the
    commit): the run and its first step then commit with the save, and only the doorbell
    is left for after it (docs/performance.md, "First step on PostgreSQL")."""
    from automation.services.processes import index_change_pending
    from automation.services.runs import run_start_statement

    index = current()
    start = _one_start(event, index)
    if start is None:
        return None
    offered = run_start_statement(source="claimed", **start)
    if offered is None:
        return None
    ctes, params, started = offered
    return Offer(ctes, params, started, fresh=lambda: _state["index"] is index,
                 with_save=lambda: _state["index"] is index and not index_change_pending())


def _one_start(event: EntityEvent, index: TriggerIndex) -> dict | None:
    """run_start's arguments when `event` starts exactly one process in the plain way
    (no condition failed, which counts a skip; no dedupe, no debounce); else None."""
    starts, skipped = starts_and_skips(event, index)
    if len(starts) != 1 or skipped or "dedupe" in starts[0] or "debounce" in starts[0]:
        return None
    return starts[0]


def starts_and_skips(event: EntityEvent, index: TriggerIndex | None = None
            ) -> tuple[list[dict], list[dict]]:
    """run_start's arguments for each process `event` starts (matched on `index`, else
    the current one), and the triggers whose condition did not hold, as
    {process, trigger, reason}."""
    scope = trigger_scope(event)
    scope_event = scope["event"]
    starts, skipped, seen = [], [], set()
    for entry in (index or current()).match(event, scope):
        if entry.process_id in seen:
            continue
        reason = condition_skip_reason(entry.trigger_id, entry.condition, scope)
        if reason is not None:
            skipped.append({"process": entry.version.process.slug, "trigger": entry.trigger_id,
                            "reason": reason})
            continue
        seen.add(entry.process_id)
        start = {
            "process": entry.version.process, "version": entry.version,
            "trigger": {"type": entry.type, "triggerId": entry.trigger_id, "event": scope_event},
            "input": scope_event["data"], "entity": event.entity, "event": event,
            "idempotency_key": f"event:{event.pk}:process:{entry.process_id}",
        }
        if entry.dedupe_key:
            key = _key(entry, entry.dedupe_key, scope)
            if key is not None:
                start["dedupe"] = (f"trigger:{entry.trigger_id}", key, entry.dedupe_window_ms)
        if entry.debounce is not None:
            key = _key(entry, entry.debounce.key, scope) if entry.debounce.key else None
            start["debounce"] = (entry.debounce, key if key is not None else
                                 str(event.entity_id or ""))
        starts.append(start)
    return starts, skipped


def _key(entry: Entry, source: str, scope: dict) -> str | None:
    """A trigger's dedupe or debounce key for this event; None (logged) when it cannot be
    evaluated: then no dedupe (the run starts) and the entity's debounce key."""
    try:
        return str(evaluate(source, scope))
    except EntitiesError as exc:
        logger.warning("trigger %s key %r failed: %s", entry.trigger_id, source, exc)
        return None

