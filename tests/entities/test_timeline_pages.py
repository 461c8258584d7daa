"""Cursor pages of the why-timeline stay complete when a source has more rows than a
page and a kind filter leaves pages short (entities.timeline)."""

import pytest

from entities.services import entity_transition, entity_update
from entities.timeline import TIE_MARGIN, timeline
from tests.factories import make_order

pytestmark = pytest.mark.django_db


def every_page(order, **kwargs):
    entries, cursor, pages = [], None, 0
    while True:
        page, cursor = timeline(order, cursor=cursor, **kwargs)
        entries += page
        pages += 1
        assert pages < 500, "the cursor does not move on"
        if cursor is None:
            return entries, pages


def test_a_kind_filter_over_more_events_than_a_page_finds_every_entry(order_type):
    order = make_order(reference="ORD-P1")  # created in approved
    for n in range(TIE_MARGIN + 10):
        entity_update(entity=order, data={**order.data, "items": n + 1})
    entity_transition(entity=order, to_status="shipped")
    for n in range(5):
        entity_update(entity=order, data={**order.data, "items": 100 + n})

    statuses, pages = every_page(order, kinds={"status"}, limit=1)
    assert [e.summary for e in statuses] == [
        "Created in approved (through received)", "Moved from approved to shipped"]
    assert pages >= 2

    everything, _ = every_page(order, limit=7)
    changes = [e for e in everything if e.kind == "field_change"]
    assert len(changes) == 1 + TIE_MARGIN + 10 + 5
    assert len({e.key for e in everything}) == len(everything)
    assert [(e.at, e.key) for e in everything] == sorted((e.at, e.key) for e in everything)

    latest, _ = timeline(order, limit=3, newest=True)
    assert [e.details["changes"][0]["to"] for e in latest] == [102, 103, 104]
