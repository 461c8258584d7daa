"""API process list and editor (server side)."""

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from automation.models import ApiProcess, Run
from automation.services.processes import process_save
from automation.views.graph import render_graph

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = reverse("admin:automation_apiprocess_changelist")
PREVIEW = reverse("admin:automation_process_preview")


def steps_abc():
    return [
        {"id": "a", "type": "function", "function": "test.record", "next": "b"},
        {"id": "b", "type": "function", "function": "test.record"},
    ]


def make(slug="p", steps=None, triggers=None, **kwargs) -> ApiProcess:
    definition = {"steps": steps or steps_abc(), "triggers": triggers or []}
    return process_save(
        slug=slug, name=kwargs.pop("name", slug.title()), definition=definition, **kwargs
    )


def add_runs(process, **counts) -> None:
    for status, n in counts.items():
        for _ in range(n):
            Run.objects.create(process=process, version=process.current_version, status=status)


def change_url(process) -> str:
    return reverse("admin:automation_apiprocess_change", args=[process.pk])


def form_data(process, definition, **overrides) -> dict:
    return {
        "name": process.name,
        "description": "",
        "entity_type": "",
        "enabled": "on",
        "definition": json.dumps(definition),
        "_continue": "1",
        **overrides,
    }


# --- List ---------------------------------------------------------------------------------


def test_list_shows_triggers_last_run_and_success_rate(admin_client, order_type):
    process = make(
        "approve",
        triggers=[{"type": "status", "config": {"entityType": "order", "status": "received"}}],
        entity_type=order_type,
    )
    add_runs(process, completed=3, failed=1)
    old = Run.objects.create(process=process, version=process.current_version, status="failed")
    Run.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=9))

    html = admin_client.get(CHANGELIST).content.decode()

    assert "order enters received" in html
    assert "75%" in html  # 3 of 4 in the last 7 days; the 9-day-old failure is not counted
    assert 'class="ef-status ef-status-completed"' in html or "ef-status-failed" in html
    row = ApiProcess.objects.get(pk=process.pk)
    assert row is not None


def test_list_needs_a_bounded_number_of_queries(admin_client, django_assert_max_num_queries):
    for n in range(25):
        add_runs(make(f"p{n}"), completed=2, failed=1)

    with django_assert_max_num_queries(10):
        response = admin_client.get(CHANGELIST)

    assert response.status_code == 200
    assert response.content.decode().count("</span>67%") == 25


def test_list_without_runs_says_so(admin_client):
    make("idle")
    html = admin_client.get(CHANGELIST).content.decode()
    assert "never run" in html and "no runs" in html and "manual only" in html


def test_enable_and_disable_actions_go_through_the_service(admin_client):
    process = make("p")
    admin_client.post(CHANGELIST, {"action": "disable_selected", "_selected_action": [process.pk]})
    process.refresh_from_db()
    assert process.enabled is False
    assert not process.triggers.exists()
    admin_client.post(CHANGELIST, {"action": "enable_selected", "_selected_action": [process.pk]})
    process.refresh_from_db()
    assert process.enabled is True


# --- Editor -------------------------------------------------------------------------------


def test_editor_shows_json_step_list_graph_and_versions(admin_client):
    process = make("p")
    html = admin_client.get(change_url(process)).content.decode()
    assert 'data-ef-editor="1"' in html
    assert 'class="ef-steplist"' in html and 'data-step-id="b"' in html
    assert "<svg" in html and "ef-node-function" in html
    assert "v1" in html and "current" in html


def test_saving_a_changed_definition_makes_a_new_version(admin_client, admin_user):
    process = make("p")
    steps = [*steps_abc()[:1], {"id": "b", "type": "function", "function": "test.boom"}]

    response = admin_client.post(change_url(process), form_data(process, {"steps": steps}))

    assert response.status_code == 302
    process.refresh_from_db()
    assert process.current_version.number == 2
    assert process.current_version.created_by == admin_user
    assert process.definition["steps"][1]["function"] == "test.boom"


def test_an_invalid_definition_shows_each_error_beside_its_step_and_saves_nothing(admin_client):
    process = make("p")
    steps = [
        {"id": "a", "type": "function", "function": "test.record", "next": "b"},
        {"id": "b", "type": "function", "function": "test.record", "next": "x"},
    ]

    response = admin_client.post(change_url(process), form_data(process, {"steps": steps}))

    assert response.status_code == 200
    html = response.content.decode()
    start = html.index('id="ef-step-1"')
    block = html[start : html.index("</li>", start)]
    assert "ef-has-error" in html[start - 80 : start]
    assert "unknown step &#x27;x&#x27;" in block and "<b>next</b>" in block
    assert "Nothing was saved" in html
    assert "ef-node-unknown" in html  # the graph draws the missing target
    process.refresh_from_db()
    assert process.current_version.number == 1


def test_malformed_json_is_reported_with_its_position(admin_client):
    process = make("p")
    data = {**form_data(process, {}), "definition": '{"steps": [}'}
    html = admin_client.post(change_url(process), data).content.decode()
    assert "Not valid JSON" in html and "line 1, column 12" in html


def test_adding_a_process_uses_process_save(admin_client):
    url = reverse("admin:automation_apiprocess_add")
    data = {
        "slug": "new-one",
        "name": "New one",
        "description": "",
        "entity_type": "",
        "enabled": "on",
        "definition": json.dumps({"steps": steps_abc()}),
    }
    response = admin_client.post(url, data)
    assert response.status_code == 302
    assert ApiProcess.objects.get(slug="new-one").current_version.number == 1


def test_preview_returns_panel_html_for_the_posted_definition(admin_client):
    steps = [{"id": "a", "type": "condition", "condition": "result.x > 1", "next": "nope"}]
    body = admin_client.post(PREVIEW, {"definition": json.dumps({"steps": steps})}).json()
    assert body["valid"] is False and body["errorCount"] >= 1
    assert "unknown step" in body["steps"] and "ef-has-error" in body["steps"]
    assert "<svg" in body["graph"]


def test_preview_refuses_a_post_without_csrf(admin_user):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.post(PREVIEW, {"definition": "{}"}).status_code == 403


def test_preview_refuses_non_staff(client, django_user_model):
    user = django_user_model.objects.create_user("viewer", password="x")
    client.force_login(user)
    response = client.post(PREVIEW, {"definition": "{}"})
    assert response.status_code == 302 and "/login/" in response["Location"]


# --- Graph --------------------------------------------------------------------------------


def test_graph_marks_fan_out_join_and_labels_edges():
    steps = [
        {"id": "split", "type": "parallel", "next": ["left", "right"]},
        {
            "id": "left",
            "type": "function",
            "function": "f",
            "next": "join",
            "config": {"onError": "fix"},
        },
        {"id": "right", "type": "function", "function": "f", "next": "join"},
        {"id": "fix", "type": "function", "function": "f"},
        {"id": "join", "type": "function", "function": "f"},
    ]
    svg = str(render_graph({"steps": steps}))
    assert "fan-out ×2" in svg and "join · waits for 2" in svg
    assert "ef-edge-label-onError" in svg and "ef-node-parallel" in svg


def test_graph_draws_loop_back_edges_and_tolerates_garbage():
    steps = [
        {
            "id": "each",
            "type": "loop",
            "next": "body",
            "config": {"items": "input.xs", "then": "done"},
        },
        {"id": "body", "type": "function", "function": "f", "next": "each"},
        {"id": "done", "type": "function", "function": "f"},
    ]
    assert "ef-edge-back" in str(render_graph({"steps": steps}))
    assert render_graph({"steps": "nope"}) is None
    assert render_graph([1, 2]) is None
    assert "<svg" in str(render_graph({"steps": [{"id": "<b>", "type": "x", "next": "a"}, 5]}))
    assert "<b>" not in str(render_graph({"steps": [{"id": "<b>", "type": "x"}]}))


def test_the_add_page_starts_from_a_valid_example(admin_client):
    html = admin_client.get(reverse("admin:automation_apiprocess_add")).content.decode()
    assert "✓ valid" in html and 'data-step-id="start"' in html and "<svg" in html
