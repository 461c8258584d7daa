"""Dedupe (docs/user-guide/concurrency.md#dedupe): POST /api/events with a dedupeKey
publishes once per key and window and answers a repeat with the first event's answer;
a trigger's dedupeKey (CEL) starts one run per key and window."""

from datetime import timedelta

import pytest
from django.utils import timezone

from automation.exceptions import DefinitionInvalidError
from automation.models import DedupeMark, Run
from automation.services.processes import process_save
from entities.models import EntityEvent
from tests.api.support import API_DB

pytestmark = API_DB

NOOP = [{"id": "done", "type": "function", "function": "noop"}]


def on_purchase(slug, **trigger):
    return process_save(slug=slug, name=slug, definition={"steps": NOOP, "triggers": [
        {"type": "event", "config": {"eventType": "purchase.created"}, **trigger}]})


def test_a_repeated_dedupe_key_is_answered_with_the_first_event(api):
    on_purchase("buy")
    body = {"type": "purchase.created", "data": {"total": 5}, "dedupeKey": "p-1"}
    first = api.post("/api/events", body, format="json")
    again = api.post("/api/events", {**body, "data": {"total": 6}}, format="json")
    other = api.post("/api/events", {**body, "dedupeKey": "p-2"}, format="json")

    assert first.status_code == again.status_code == other.status_code == 202
    assert first.json()["duplicate"] is False and "Entityflow-Duplicate" not in first
    assert again["Entityflow-Duplicate"] == "true"
    assert again.json() == {**first.json(), "duplicate": True}
    assert len(first.json()["executions"]) == 1
    assert other.json()["id"] != first.json()["id"] and not other.json()["duplicate"]
    assert EntityEvent.objects.filter(type="purchase.created").count() == 2
    assert Run.objects.count() == 2


def test_after_the_window_the_key_publishes_again(api):
    body = {"type": "purchase.created", "dedupeKey": "p-3", "dedupeWindowMs": 60000}
    first = api.post("/api/events", body, format="json").json()
    DedupeMark.objects.update(expires_at=DedupeMark.objects.get().expires_at - timedelta(minutes=2))
    later = api.post("/api/events", body, format="json").json()
    assert later["id"] != first["id"] and later["duplicate"] is False
    bad = api.post("/api/events", {**body, "dedupeWindowMs": 0}, format="json")
    assert bad.status_code == 422 and "dedupeWindowMs" in bad.json()["error"]["fields"]


def test_a_trigger_dedupe_key_starts_one_run_per_key(api):
    process = on_purchase("per-customer", dedupeKey="event.data.customer",
                          dedupeWindowMs=3600000)
    answers = [api.post("/api/events", {"type": "purchase.created", "data": {"customer": c}},
                        format="json").json() for c in ("ada", "ada", "bob")]
    runs = Run.objects.filter(process=process)
    assert runs.count() == 2
    assert len(answers[0]["executions"]) == 1 and answers[1]["executions"] == []
    [skip] = answers[1]["skipped"]
    assert skip["process"] == "per-customer"
    assert skip["reason"] == ("A duplicate of an earlier event within the dedupe window "
                              f"(run {answers[0]['executions'][0]}).")


@pytest.mark.parametrize(("trigger", "path", "message"), [
    ({"dedupeKey": "result.x"}, "triggers[0].dedupeKey", "result"),
    ({"dedupeWindowMs": 10}, "triggers[0].dedupeWindowMs", "dedupeWindowMs needs a dedupeKey."),
    ({"dedupeKey": "event.id", "dedupeWindowMs": -1}, "triggers[0].dedupeWindowMs",
     "dedupeWindowMs must be a whole number"),
])
def test_bad_trigger_dedupe_is_refused_at_save(trigger, path, message):
    with pytest.raises(DefinitionInvalidError) as err:
        on_purchase("bad", **trigger)
    assert any(message in m for m in err.value.fields[path]), err.value.fields


def test_dedupe_applies_to_event_and_status_triggers_only():
    with pytest.raises(DefinitionInvalidError) as err:
        process_save(slug="m", name="m", definition={"steps": NOOP, "triggers": [
            {"type": "manual", "dedupeKey": "input.id"}]})
    assert err.value.fields["triggers[0].dedupeKey"] == [
        "dedupeKey applies to status and event triggers only."]


def test_the_sweeper_drops_marks_long_past_their_window(api):
    from automation.services.dedupe import flow_marks_prune

    for key in ("old", "fresh"):
        api.post("/api/events", {"type": "purchase.created", "dedupeKey": key}, format="json")
    DedupeMark.objects.filter(key="old").update(expires_at=timezone.now() - timedelta(days=2))
    assert flow_marks_prune() == 1
    assert list(DedupeMark.objects.values_list("key", flat=True)) == ["fresh"]
