"""An entity's why-timeline: one stream, oldest first, of what happened to it and who
did it (docs/user-guide/timeline.md).

Built from the records already kept. The entity's own (events: field changes,
requirement changes, status moves; external links) are read here; the automation app
registers the sources of runs, steps, approvals and webhook deliveries at startup
(`register_source`), so this module imports nothing above it.

A page is cut by a cursor, the (time, key) of the last entry seen. Each source reads
only its own rows after the cursor's time, at most one page and a margin for entries
that share a time, and the page is the merge of what they return.
"""

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.utils.dateparse import parse_datetime

from entities.actors import actor_view
from entities.models import Entity, EntityEvent

KINDS = ("field_change", "requirements", "status", "run", "step_failed", "step_retried",
         "approval_requested", "approval_decided", "webhook", "link")
MAX_PAGE = 200
TIE_MARGIN = 50


class CursorInvalid(ValueError):
    pass


@dataclass(frozen=True, order=True)
class Entry:
    at: datetime
    key: str
    kind: str = field(compare=False)
    actor: str = field(compare=False, default="")
    summary: str = field(compare=False, default="")
    details: dict = field(compare=False, default_factory=dict)

    def as_json(self) -> dict:
        return {"id": self.key, "kind": self.kind, "at": self.at.isoformat(),
                "actor": actor_view(self.actor), "summary": self.summary,
                "details": self.details}


@dataclass(frozen=True)
class Window:
    """What one source is asked for: entries at or after `after` (oldest first), or with
    `newest`, at most `limit` of the latest."""
    kinds: frozenset
    after: datetime | None
    limit: int
    newest: bool = False
    horizons: list = field(default_factory=list)  # where a source stopped reading

    def rows(self, qs: QuerySet, time_field: str) -> list:
        """At most a page and a margin of rows; when there were more, the time of the last
        one read is a horizon: this page ends before it (other sources' entries after it
        would skip this source's unread rows)."""
        if self.after is not None:
            qs = qs.filter(**{f"{time_field}__gte": self.after})
        order = [f"-{time_field}", "-pk"] if self.newest else [time_field, "pk"]
        rows = list(qs.order_by(*order)[: self.limit + TIE_MARGIN + 1])
        if len(rows) > self.limit + TIE_MARGIN:
            rows.pop()
            self.horizons.append(getattr(rows[-1], time_field))
        return rows

    def wants(self, *kinds: str) -> bool:
        return any(kind in self.kinds for kind in kinds)


Source = Callable[[Entity, Window], list[Entry]]
_sources: dict[str, Source] = {}


def register_source(name: str, source: Source) -> None:
    _sources[name] = source


def encode_cursor(entry: Entry) -> str:
    raw = json.dumps({"at": entry.at.isoformat(), "key": entry.key}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        at = parse_datetime(raw["at"])
        if at is None or not isinstance(raw["key"], str):
            raise ValueError
        return at, raw["key"]
    except (ValueError, TypeError, KeyError, binascii.Error, UnicodeDecodeError):
        raise CursorInvalid("Not a cursor this timeline gave out.") from None


def timeline(entity: Entity, *, kinds: set[str] | None = None, cursor: str | None = None,
             limit: int = 50, newest: bool = False) -> tuple[list[Entry], str | None]:
    """(entries oldest first, the next page's cursor or None). `newest`: the latest
    `limit` entries instead (the entity page), still oldest first, without a cursor."""
    limit = max(1, min(limit, MAX_PAGE))
    after = decode_cursor(cursor) if cursor else None
    window = Window(frozenset(kinds or KINDS), after[0] if after else None, limit, newest)
    entries = [entry for source in [_entity_events, _links, *_sources.values()]
               for entry in source(entity, window) if entry.kind in window.kinds]
    if after is not None:
        entries = [entry for entry in entries if (entry.at, entry.key) > after]
    if newest:
        if window.horizons:
            entries = [entry for entry in entries if entry.at > max(window.horizons)]
        return sorted(entries)[-limit:], None
    if window.horizons:
        horizon = min(window.horizons)
        entries = [entry for entry in entries if entry.at < horizon]
    entries.sort()
    page = entries[:limit]
    if len(entries) > limit:
        return page, encode_cursor(page[-1])
    if window.horizons:  # a short page (a kind filter): go on from the horizon
        last = page[-1] if page else Entry(at=min(window.horizons), key="", kind="")
        if page and last.at < min(window.horizons):
            last = Entry(at=min(window.horizons), key="", kind="")
        return page, encode_cursor(last)
    return page, None


def _entity_events(entity: Entity, window: Window) -> list[Entry]:
    if not window.wants("field_change", "requirements", "status"):
        return []
    events = window.rows(entity.events.all(), "created_at")
    events.sort(key=lambda event: event.pk)
    previous = None
    if events:  # the event before the first one read: what the first one changed
        previous = entity.events.filter(pk__lt=events[0].pk).order_by("-pk").first()
    entries = []
    for event in events:
        entries.extend(_event_entries(event, previous))
        previous = event
    return entries


def _event_entries(event: EntityEvent, previous: EntityEvent | None) -> list[Entry]:
    base = {"at": event.created_at, "actor": event.actor}
    before = (previous.snapshot if previous is not None else {}) or {}
    after = event.snapshot or {}
    entries = []
    old, new = before.get("data") or {}, after.get("data") or {}
    changes = [{"field": key, "from": old.get(key), "to": new.get(key)}
               for key in sorted(old.keys() | new.keys()) if old.get(key) != new.get(key)]
    if changes:
        entries.append(Entry(key=f"event:{event.pk}:1-fields", kind="field_change",
                             summary="Changed " + ", ".join(c["field"] for c in changes),
                             details={"event": event.pk, "changes": changes}, **base))
    was = {(u.get("status"), u.get("requirement")) for u in before.get("unmetRequirements") or ()}
    now = {(u.get("status"), u.get("requirement")) for u in after.get("unmetRequirements") or ()}
    if was != now and (previous is not None or now):
        unmet = [{"status": s, "requirement": r} for s, r in sorted(now - was)]
        met = [{"status": s, "requirement": r} for s, r in sorted(was - now)]
        words = [f"{len(unmet)} not met" if unmet else "",
                 f"{len(met)} met again" if met else ""]
        entries.append(Entry(key=f"event:{event.pk}:2-requirements", kind="requirements",
                             summary="Requirements: " + "; ".join(w for w in words if w),
                             details={"event": event.pk, "nowUnmet": unmet, "nowMet": met},
                             **base))
    if event.type == EntityEvent.Type.CREATED or event.from_status != event.to_status:
        passed = list(event.entered_statuses or ())[:-1]
        summary = (f"Created in {event.to_status}" if event.type == EntityEvent.Type.CREATED
                   else f"Moved from {event.from_status} to {event.to_status}")
        if passed:
            summary += f" (through {', '.join(passed)})"
        entries.append(Entry(key=f"event:{event.pk}:3-status", kind="status", summary=summary,
                             details={"event": event.pk, "from": event.from_status or None,
                                      "to": event.to_status, "passedThrough": passed},
                             **base))
    return entries


def _links(entity: Entity, window: Window) -> list[Entry]:
    if not window.wants("link"):
        return []
    return [Entry(at=link.updated_at, key=f"link:{link.pk}", kind="link", actor=link.actor,
                  summary=f"Linked to {link.provider} {link.object_type} {link.external_id}",
                  details={"provider": link.provider, "objectType": link.object_type,
                           "externalId": link.external_id, "url": link.url or None})
            for link in window.rows(entity.external_links.all(), "updated_at")]


def details_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
