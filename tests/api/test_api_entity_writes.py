"""Entity writes over the API (create, update, move, upsert by reference): the same
services as the admin, so the same events and the same runs."""

import pytest
from django.urls import reverse

from automation.models import Run
from automation.services.processes import process_save
from entities.models import Entity, EntityEvent
from tests.api.support import API_DB, assert_error
from tests.entities.test_admin import change_url, page_values
from tests.factories import order_data

pytestmark = API_DB


@pytest.fixture
def status_process(order_type):
    """Starts on every status an order enters (a noop: the run completes at once)."""
    return process_save(slug="on-status", name="On status", entity_type=order_type, definition={
        "steps": [{"id": "done", "type": "function", "function": "noop"}],
        "triggers": [{"type": "status", "config": {"entityType": "order", "status": status}}
                     for status in ("received", "approved", "shipped")]})


def history(entity_id) -> tuple[list, list]:
    """(events as (type, from, to, entered), runs as the status that started them)."""
    events = [(e.type, e.from_status, e.to_status, e.entered_statuses)
              for e in EntityEvent.objects.filter(entity_id=entity_id).order_by("id")]
    runs = [(r.process.slug, r.status, r.event.type, r.event.to_status or r.event.entered_statuses)
            for r in Run.objects.filter(entity_id=entity_id).select_related("event", "process")
            .order_by("created_at", "id")]
    return events, runs


def test_an_entity_created_and_moved_over_the_api_starts_the_same_runs_as_in_the_admin(
        api, admin_client, order_type, status_process):
    created = api.post("/api/entities", {"type": "order", "reference": "ORD-API",
                                         "data": order_data()}, format="json")
    assert created.status_code == 201, created.content
    entity = created.json()
    assert entity["status"] == "approved" and entity["version"] == 1
    assert created["ETag"] == '"1"'
    moved = api.post(f"/api/entities/{entity['id']}/transition", {"to": "shipped"},
                     format="json", HTTP_IF_MATCH='"1"')
    assert moved.status_code == 200, moved.content
    assert moved.json()["status"] == "shipped" and moved.json()["version"] == 2

    add = admin_client.post(reverse("admin:entities_entity_add"), {
        "entity_type": order_type.pk, "reference": "ORD-ADMIN",
        "data": __import__("json").dumps(order_data()), "_continue": "1"})
    assert add.status_code == 302
    in_admin = Entity.objects.get(reference="ORD-ADMIN")
    form = page_values(admin_client.get(change_url(in_admin)))
    moved_in_admin = admin_client.post(change_url(in_admin), {**form, "move_to": "shipped"})
    assert moved_in_admin.status_code == 302

    over_api, over_admin = history(entity["id"]), history(in_admin.pk)
    assert over_api == over_admin
    events, runs = over_api
    assert [e[0] for e in events] == ["entity.created", "entity.status_changed"]
    assert len(runs) == 2 and all(r[1] == "completed" for r in runs)


def test_a_stale_if_match_is_a_409_and_nothing_is_written(api, order_type, status_process):
    entity = api.post("/api/entities", {"type": "order", "reference": "ORD-1",
                                        "data": order_data()}, format="json").json()
    url = f"/api/entities/{entity['id']}"
    assert api.patch(url, {"data": {"note": "first"}}, format="json",
                     HTTP_IF_MATCH="1").json()["version"] == 2
    before = (Entity.objects.get(pk=entity["id"]).data, EntityEvent.objects.count(),
              Run.objects.count())

    stale = api.patch(url, {"data": {"note": "second"}}, format="json", HTTP_IF_MATCH="1")
    assert_error(stale, 409, "conflict")
    assert_error(api.patch(url, {"data": {"note": "x"}, "version": 1}, format="json"), 409)
    assert_error(api.post(f"{url}/transition", {"to": "shipped"}, format="json",
                          HTTP_IF_MATCH='W/"1"'), 409)
    after = (Entity.objects.get(pk=entity["id"]).data, EntityEvent.objects.count(),
             Run.objects.count())
    assert after == before and after[0]["note"] == "first"
    assert Entity.objects.get(pk=entity["id"]).version == 2


def test_patch_merges_or_replaces_and_checks_the_schema(api, order_type):
    entity = api.post("/api/entities", {"type": "order", "reference": "ORD-2",
                                        "data": order_data()}, format="json").json()
    url = f"/api/entities/{entity['id']}"
    merged = api.patch(url, {"data": {"note": "hi"}}, format="json").json()
    assert merged["data"] == {**order_data(), "note": "hi"}
    small = {"customer": {"name": "Ada"}, "total": 1}
    replaced = api.patch(url, {"data": small, "mode": "replace"}, format="json")
    assert replaced.status_code == 200
    assert replaced.json()["data"] == small
    assert replaced.json()["unmetRequirements"]  # the email is gone
    error = assert_error(api.patch(url, {"data": {"total": "lots"}}, format="json"), 422)
    assert "data.total" in error["fields"]
    assert_error(api.patch(url, {"data": {}}, format="json", HTTP_IF_MATCH="soon"), 422)
    assert_error(api.patch(url, {"data": {}, "version": 2}, format="json", HTTP_IF_MATCH="3"),
                 422)
    assert_error(api.patch(url, {"data": {}, "extra": 1}, format="json"), 422)
    events = EntityEvent.objects.count()
    unchanged = api.patch(url, {}, format="json")
    assert unchanged.status_code == 200 and unchanged.json()["version"] == 3
    assert_error(api.patch(url, {"version": 1}, format="json"), 409)
    assert EntityEvent.objects.count() == events
    assert_error(api.patch("/api/entities/00000000-0000-0000-0000-000000000000",
                           {"data": {}}, format="json"), 404)


def test_create_checks_type_status_and_reference(api, order_type):
    assert_error(api.post("/api/entities", {"type": "nope", "reference": "X"}, format="json"),
                 422)
    error = assert_error(api.post("/api/entities", {"type": "order", "reference": "X",
                                                    "status": "shipped"}, format="json"), 422)
    assert "received" in error["fields"]["status"][0]
    body = {"type": "order", "reference": "X", "data": order_data()}
    assert_error(api.post("/api/entities", {**body, "data": {}}, format="json"), 422)
    assert api.post("/api/entities", body, format="json").status_code == 201
    again = assert_error(api.post("/api/entities", body, format="json"), 422)
    assert "reference" in again["fields"]
    assert Entity.objects.filter(reference="X").count() == 1


def test_only_allowed_moves_are_made(api, order_type):
    entity = api.post("/api/entities", {"type": "order", "reference": "ORD-3", "data": {
        "customer": {"name": "Ada"}, "total": 0}}, format="json").json()
    assert entity["status"] == "received"
    url = f"/api/entities/{entity['id']}/transition"
    not_allowed = assert_error(api.post(url, {"to": "shipped"}, format="json"), 409, "conflict")
    assert not_allowed["fields"]["to"]
    unmet = assert_error(api.post(url, {"to": "approved"}, format="json"), 409)
    assert unmet["fields"]["to"]
    assert Entity.objects.get(pk=entity["id"]).status == "received"
    assert EntityEvent.objects.filter(entity_id=entity["id"]).count() == 1


def test_upsert_by_reference_is_idempotent(api, order_type, status_process):
    url = "/api/entity-types/order/entities/ORD-SYNC"
    first = api.put(url, {"data": order_data()}, format="json")
    assert first.status_code == 201 and first.json()["status"] == "approved"
    events = EntityEvent.objects.count()
    runs = Run.objects.count()

    again = api.put(url, {"data": order_data()}, format="json")
    assert again.status_code == 200 and again.json()["version"] == 1
    assert (EntityEvent.objects.count(), Run.objects.count()) == (events, runs)

    moved = api.put(url, {"data": order_data(note="x"), "status": "shipped"}, format="json")
    assert moved.status_code == 200
    assert moved.json()["status"] == "shipped" and moved.json()["data"]["note"] == "x"
    assert [e.type for e in EntityEvent.objects.order_by("id")][events:] == [
        "entity.updated", "entity.status_changed"]
    assert Run.objects.count() == runs + 1  # the status trigger on `shipped`
    assert_error(api.put("/api/entity-types/nope/entities/A", {"data": {}}, format="json"), 404)
    assert_error(api.put(url, {"data": order_data(note="x"), "status": "received"},
                         format="json"), 409)
