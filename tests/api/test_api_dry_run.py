"""automation.services.dry_run: the preview shared by the API and the admin modal."""

import pytest

from automation.models import Run
from automation.services.dry_run import dry_run
from automation.services.processes import process_save
from tests.factories import make_order

pytestmark = pytest.mark.django_db


def preview(steps, entity, **kwargs):
    process = process_save(slug="p", name="P", definition={"steps": steps, "triggers": []},
                           **kwargs)
    return dry_run(process=process, entity=entity)


def by_id(result):
    return {s["id"]: s for s in result["steps"]}


def test_false_condition_takes_the_else_branch(order_type):
    order = make_order(total=5)
    result = preview([
        {"id": "big", "type": "condition", "condition": "entity.data.total > 100", "next": "a",
         "config": {"else": "b"}},
        {"id": "a", "type": "function", "function": "noop"},
        {"id": "b", "type": "function", "function": "noop"}], order)
    steps = by_id(result)
    assert steps["big"] == {"id": "big", "type": "condition", "name": "big", "wouldRun": "yes",
                            "condition": "entity.data.total > 100", "value": False,
                            "evaluation": "false"}
    assert steps["b"]["wouldRun"] == "yes" and result["skipped"] == ["a"]
    assert result["version"] == 1 and result["entity"]["reference"] == order.reference
    assert Run.objects.count() == 0


def test_conditions_on_unknown_results_are_unknown_and_both_branches_maybe(order_type):
    result = preview([
        {"id": "call", "type": "function", "function": "noop", "next": "check"},
        {"id": "check", "type": "condition", "condition": "result.ok", "next": "yes",
         "config": {"else": "no"}},
        {"id": "yes", "type": "function", "function": "noop"},
        {"id": "no", "type": "function", "function": "noop"}], make_order())
    steps = by_id(result)
    assert steps["call"]["wouldRun"] == "yes" and steps["call"]["function"] == "noop"
    assert steps["check"]["evaluation"] == "unknown" and steps["check"]["value"] is None
    assert steps["yes"]["wouldRun"] == steps["no"]["wouldRun"] == "maybe"


def test_evaluation_errors_are_reported_not_raised(order_type):
    result = preview([
        {"id": "check", "type": "condition", "condition": "entity.data.missing > 1", "next": "a"},
        {"id": "a", "type": "function", "function": "noop"}], make_order())
    check = by_id(result)["check"]
    assert check["evaluation"] == "error" and check["error"]
    assert by_id(result)["a"]["wouldRun"] == "maybe"


def test_parallel_loops_and_joins(order_type):
    order = make_order(items=3)
    result = preview([
        {"id": "fan", "type": "parallel", "next": ["left", "right"]},
        {"id": "left", "type": "function", "function": "noop", "next": "join"},
        {"id": "right", "type": "loop", "next": "body",
         "config": {"items": "[1, 2, entity.data.items]", "then": "join"}},
        {"id": "body", "type": "function", "function": "noop"},
        {"id": "join", "type": "condition", "condition": "entity.data.items == 3", "next": "end"},
        {"id": "end", "type": "function", "function": "noop"}], order)
    steps = by_id(result)
    assert steps["right"]["items"] == 3 and steps["body"]["wouldRun"] == "yes"
    assert steps["join"]["value"] is True and steps["end"]["wouldRun"] == "yes"
    assert result["skipped"] == []


def test_case_scope_and_unmet_requirements(order_type):
    order = make_order(total=0)
    result = preview([{"id": "a", "type": "condition", "condition": "entity.status == 'received'",
                       "next": "b"}, {"id": "b", "type": "function", "function": "noop"}], order)
    assert by_id(result)["a"]["value"] is True
    assert result["unmetRequirements"] == order.unmet_requirements != []
