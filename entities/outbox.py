"""The event outbox: one EntityEvent per save, written in the save's transaction and
dispatched to subscribers only after commit (a rolled-back save leaves nothing).

Subscribers (automation plugs in here) are plain callables. Each may also declare an
`interested(event)` predicate: when no subscriber cares about an event it is written
already dispatched, so saves nobody listens to cost no extra query after commit.
"""

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Any

from django.db import DatabaseError, connections, router, transaction
from django.utils import timezone

from entities.actors import current_actor
from entities.db import prepared
from entities.db.commits import commit_without_flush, execute_alone
from entities.db.compiled import update_sql
from entities.models import Entity, EntityEvent

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Offer:
    """What a subscriber would write for an event, as SQL (see `subscribe`)."""
    ctes: str
    params: tuple
    written: Callable[[Any], None]
    fresh: Callable[[], bool] = lambda: True
    # Asked inside the save's transaction: whether the statement may run there, now
    # (nothing this transaction did before makes it stale). See `subscribe`.
    with_save: Callable[[], bool] = lambda: False


@dataclass(frozen=True)
class Subscriber:
    name: str
    handle: Callable[[EntityEvent], None]
    interested: Callable[[EntityEvent], bool]
    statement: Callable[[EntityEvent], Offer | None] | None = None
    prepare: Callable[[EntityEvent], Any] | None = None
    with_save: Callable[[EntityEvent], Callable[[EntityEvent], bool] | None] | None = None


_subscribers: dict[str, Subscriber] = {}
_rehearsing: ContextVar[bool] = ContextVar("entityflow_outbox_rehearsal", default=False)


@contextmanager
def rehearsal() -> Iterator[None]:
    """Saves inside write their events as usual, but no subscriber is asked about them and
    nothing is scheduled: for explain, which reads the events back and rolls the whole
    save back (docs/user-guide/explain.md). Asking would run the dispatch's matching and
    condition checks (and their logging) for a save that never happens."""
    token = _rehearsing.set(True)
    try:
        yield
    finally:
        _rehearsing.reset(token)


def subscribe(name: str, handle: Callable, interested: Callable | None = None,
              statement: Callable | None = None, prepare: Callable | None = None,
              with_save: Callable | None = None) -> None:
    """Register (or replace) a subscriber; `handle` runs inside the dispatch transaction.

    `statement(event)`, when given, may offer what `handle` would write as SQL instead:
    an `Offer` of CTE definitions that write only if the CTE `claimed` has a row and
    that define `written_row`, whose first column `written(value)` receives (None when
    nothing was written) after the commit; or None for "use handle". It is asked when
    the event is written, inside the save's transaction, so that only the statement is
    left for after the commit (the time between a save's commit and its first step);
    `fresh()` says after the commit whether the offer still stands, else `handle` runs.
    When `with_save()` says so, the statement runs at once inside the save's
    transaction, in a savepoint of its own sent with it (one round trip): the event
    and what the subscriber writes commit together, and only what `written` leaves for
    the commit (the doorbell) is done after it; a statement that fails there rolls back
    its savepoint and the dispatch is done after the commit as without it.

    `prepare(event)`, when given, is asked after the commit just before the dispatch's
    transaction, for what `handle` can do outside it (reads, building rows); what it
    returns, unless None, is passed to `handle(event, prepared)`. A transaction holds
    SQLite's one write lock from its first statement to its commit, so what is done
    before it does not keep the workers' claims waiting (docs/performance.md, "First
    step on SQLite").

    `with_save(event)`, when given, is asked inside the save's transaction before the
    event's row is written (the event has no id yet), when this subscriber is the only
    one interested: whether what `handle` would write can be written in the save's own
    transaction instead of after its commit. It returns None (no: the ways above), or
    `write(event)`: called once the row is written, already marked dispatched, inside a
    savepoint of the save's transaction; it writes what `handle` would and says True, or
    finds that it cannot after all and says False. A rolled-back save then rolls back
    the dispatch with the event, and the event is dispatched exactly once, by the commit
    that makes it visible. When `write` says False or raises, its savepoint is rolled
    back and the event is written undispatched, to be dispatched after the commit as
    without `with_save` (where a failure is logged and left to the sweeper): a subscriber
    that fails never fails the save (docs/architecture.md, "Life of an event")."""
    _subscribers[name] = Subscriber(name, handle, interested or (lambda event: True),
                                    statement, prepare, with_save)


def unsubscribe(name: str) -> None:
    _subscribers.pop(name, None)


def entity_snapshot(entity: Entity) -> dict:
    return {
        "id": str(entity.id),
        "type": entity.entity_type.key,
        "reference": entity.reference,
        "status": entity.status,
        "data": entity.data,
        "version": entity.version,
        "unmetRequirements": entity.unmet_requirements,
    }


def event_record_for_save(entity: Entity, *, created: bool) -> EntityEvent:
    """Write the outbox row for one save of `entity` (caller is inside its transaction)."""
    before = entity.saved_state or {}
    old_status = "" if created else (before.get("status") or "")
    entered = getattr(entity, "_entered_statuses", None) or (
        [entity.status] if created or old_status != entity.status else []
    )
    if created:
        kind, changed = EntityEvent.Type.CREATED, sorted((entity.data or {}).keys())
    else:
        old_data = before.get("data") or {}
        new_data = entity.data or {}
        changed = sorted(k for k in old_data.keys() | new_data.keys()
                         if old_data.get(k) != new_data.get(k))
        if old_status != entity.status:
            changed.append("status")
        kind = (EntityEvent.Type.STATUS_CHANGED if old_status != entity.status
                else EntityEvent.Type.UPDATED)
    event = EntityEvent(
        type=kind, entity=entity, entity_type_key=entity.entity_type.key,
        from_status=old_status, to_status=entity.status, entered_statuses=entered,
        changed_fields=changed, snapshot=entity_snapshot(entity), source="entity",
        actor=current_actor(), occurred_at=timezone.now(),
    )
    _write_and_schedule(event)
    entity.remember_saved_state()
    entity._entered_statuses = None
    return event


def event_publish(*, type: str, data: dict, source: str = "", occurred_at=None) -> EntityEvent:
    """A system publishes its own event (`order.created`) through the API, which answers
    with the runs it started: their dispatch is committed durably."""
    with transaction.atomic():
        event = EntityEvent(type=type, data=data, source=source, actor=current_actor(),
                            occurred_at=occurred_at or timezone.now())
        _write_and_schedule(event, durable=True)
    return event


def event_record_skipped(event: EntityEvent, skipped: list[dict]) -> None:
    """Keep on the event which subscribers' triggers skipped it and why (written in the
    dispatch's transaction; its admin page and POST /api/events show them)."""
    event.skipped = skipped
    EntityEvent.objects.filter(pk=event.pk).update(skipped=skipped)


def _write_and_schedule(event: EntityEvent, *, durable: bool = False) -> None:
    if _rehearsing.get():
        event.save(force_insert=True)
        return
    interested = [s for s in list(_subscribers.values()) if s.interested(event)]
    if not interested:
        event.dispatched_at = timezone.now()
        event.save(force_insert=True)
        return
    if _dispatched_with_save(event, interested):
        return
    if event.pk is None:
        event.save(force_insert=True)
    offer = _offer(event, interested)
    if offer is not None and _offer_with_save(event, offer):
        return
    transaction.on_commit(
        lambda: event_dispatch(event.pk, event=event, durable=durable, offer=offer))


def _dispatched_with_save(event: EntityEvent, interested: list[Subscriber]) -> bool:
    """Write the event already dispatched, with what its one interested subscriber writes
    for it, in the save's transaction (`subscribe`'s `with_save`): True when done. False
    when not: the event is written (undispatched) or still to be written (no id)."""
    if len(interested) != 1 or interested[0].with_save is None:
        return False
    try:
        write = interested[0].with_save(event)
    except DatabaseError:
        raise  # the save's transaction is broken: the save fails, as it would anyway
    except Exception:  # the dispatch after the commit meets it again, and logs it
        logger.debug("with_save of %s failed", interested[0].name, exc_info=True)
        return False
    if write is None:
        return False
    event.dispatched_at = timezone.now()
    event.save(force_insert=True)
    try:
        with transaction.atomic():  # a savepoint: a failed write leaves the save usable
            if write(event):
                return True
            raise _NotWritten
    except _NotWritten:
        pass
    except Exception:  # the dispatch after the commit meets it again, and logs it
        logger.debug("dispatch of event %s with its save failed", event.pk, exc_info=True)
    event.dispatched_at = None
    EntityEvent.objects.filter(pk=event.pk).update(dispatched_at=None)
    return False


class _NotWritten(Exception):
    """`with_save`'s write said it could not: roll its savepoint back."""


def _offer(event: EntityEvent, interested: list[Subscriber]) -> Offer | None:
    """The one interested subscriber's Offer, asked now (inside the save's transaction),
    where the dispatch can take it (PostgreSQL); None: the general way, after commit."""
    if (len(interested) != 1 or interested[0].statement is None
            or connections[router.db_for_write(EntityEvent)].vendor != "postgresql"):
        return None
    try:
        return interested[0].statement(event)
    except DatabaseError:
        raise  # the save's transaction is broken: the save fails, as it would anyway
    except Exception:  # the general way will meet it again after commit, and log it
        return None


def _offer_with_save(event: EntityEvent, offer: Offer) -> bool:
    """The Offer's one statement run inside the save's transaction (`subscribe`), where
    the statement after the commit would be a round trip and a commit of its own between
    the save and its first step (docs/performance.md, "First step on PostgreSQL"). The
    statement is the one the dispatch after the commit runs (its claim finds the event
    not yet dispatched: no other dispatcher can see it before this commit); it is in a
    savepoint of its own, so a failure leaves the save usable and the event to the
    dispatch after the commit (which logs it). True when written."""
    using = router.db_for_write(EntityEvent)
    if not connections[using].in_atomic_block or not offer.with_save():
        return False
    try:
        with connections[using].cursor() as cursor:
            prepared.execute_guarded(cursor, _statement(using, offer),
                                     (timezone.now(), event.pk, *offer.params), using=using)
            claimed, value = cursor.fetchone()
    except DatabaseError:  # rolled back to its savepoint: the save goes on
        logger.debug("dispatch of event %s with its save failed", event.pk, exc_info=True)
        return False
    if not claimed:  # cannot be: nobody else sees the event before this commit
        return False
    offer.written(value)
    return True


def _statement(using: str, offer: Offer) -> str:
    """The dispatch's one statement: the event's claim, and the subscriber's writes
    reading it (compiled SQL and the subscriber's likewise compiled CTEs; values are
    parameters: the claim's two, then the offer's)."""
    return (f"WITH claimed AS ({_claim_sql(using)} RETURNING 1), {offer.ctes} "  # noqa: S608
            "SELECT (SELECT count(*) FROM claimed), (SELECT * FROM written_row)")


def event_dispatch(event_id: int, *, event: EntityEvent | None = None,
                   durable: bool = False, offer: Offer | None = None) -> bool:
    """Hand one event to every subscriber, exactly once.

    The claim (a conditional UPDATE) and everything subscribers write commit together:
    if a subscriber fails, nothing is kept and the sweeper tries again later. Two
    dispatchers racing for one event cannot both win the claim.

    The commit does not wait for the disk (entities.db.commits) unless `durable`: the event
    itself was made durable by the save's own commit, and a dispatch a database crash
    forgets is forgotten with its claim, so the sweeper dispatches the event again. A
    step that calls out is claimed by an ordinary commit first, which makes the dispatch
    durable before anything leaves. `durable` is for callers that tell someone what the
    dispatch wrote (POST /api/events answers with the runs it started).
    """
    if event is not None and offer is not None:
        dispatched = _dispatch_in_one_statement(event, offer, durable=durable)
        if dispatched is not None:
            return dispatched
    try:
        prepared = _prepared(event) if event is not None else {}
        with transaction.atomic():
            if not durable:
                commit_without_flush()
            claimed = EntityEvent.objects.filter(pk=event_id, dispatched_at__isnull=True).update(
                dispatched_at=timezone.now()
            )
            if not claimed:
                return False
            if event is None:  # the sweeper: the saving process's copy is gone
                event = EntityEvent.objects.select_related("entity__entity_type").get(pk=event_id)
            for subscriber in list(_subscribers.values()):
                if subscriber.name in prepared:
                    subscriber.handle(event, prepared[subscriber.name])
                elif subscriber.interested(event):
                    subscriber.handle(event)
        return True
    except Exception:
        logger.exception("dispatch of event %s failed; the sweeper will retry it", event_id)
        return False


def _prepared(event: EntityEvent) -> dict[str, Any]:
    """What each interested subscriber with a `prepare` made ready for `event` (none
    for a subscriber whose prepare said None or failed: its `handle` meets it again)."""
    ready = {}
    for subscriber in list(_subscribers.values()):
        if subscriber.prepare is None or not subscriber.interested(event):
            continue
        try:
            value = subscriber.prepare(event)
        except Exception:  # handle meets it again inside the transaction, and logs it
            logger.debug("prepare of %s for event %s failed", subscriber.name, event.pk,
                         exc_info=True)
            continue
        if value is not None:
            ready[subscriber.name] = value
    return ready


def _dispatch_in_one_statement(event: EntityEvent, offer: Offer, *,
                               durable: bool) -> bool | None:
    """The common case (one subscriber is interested and said what it writes as SQL)
    as one statement, atomic on its own: the claim, and the subscriber's writes reading
    it, so a lost claim writes nothing. One round trip where the transaction takes five
    (BEGIN, SET LOCAL, the claim, the writes, COMMIT). None: not here, use the general
    way."""
    using = router.db_for_write(EntityEvent)
    connection = connections[using]
    if connection.in_atomic_block or not offer.fresh():
        return None
    try:
        with connection.cursor() as cursor:
            execute_alone(cursor, _statement(using, offer),
                          (timezone.now(), event.pk, *offer.params), using=using,
                          durable=durable, prepare=True)
            claimed, value = cursor.fetchone()
    except Exception:
        logger.exception("dispatch of event %s failed; the sweeper will retry it", event.pk)
        return False
    if not claimed:
        return False
    offer.written(value)
    return True


@lru_cache(maxsize=8)
def _claim_sql(using: str) -> str:
    """`UPDATE event SET dispatched_at = %s WHERE dispatched_at IS NULL AND id = %s`,
    compiled once: the same for every event."""
    pk, now = -1, timezone.now()
    sql, params = update_sql(EntityEvent.objects.filter(pk=pk, dispatched_at__isnull=True),
                             {"dispatched_at": now}, using)
    if list(params) != [now, pk]:
        raise RuntimeError(f"unexpected claim shape: {sql[:80]}")
    return sql


def events_sweep(*, older_than_seconds: float = 5, limit: int = 1000) -> int:
    """Dispatch events a crash left behind. Returns how many were dispatched."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    ids = list(
        EntityEvent.objects.filter(dispatched_at__isnull=True, created_at__lte=cutoff)
        .order_by("id").values_list("id", flat=True)[:limit]
    )
    return sum(1 for event_id in ids if event_dispatch(event_id))
