"""Invalid definitions are refused with the path named, and nothing is saved."""

import pytest

from automation.exceptions import DefinitionInvalidError
from automation.models import ApiProcess, ProcessVersion
from automation.services.processes import process_save

pytestmark = pytest.mark.django_db


def fn(step_id, nxt=None, **extra):
    step = {"id": step_id, "type": "function", "function": "test.record", **extra}
    if nxt is not None:
        step["next"] = nxt
    return step


CASES = [
    ("unknown next", [fn("a", "ghost")], "steps[0].next", "unknown step 'ghost'"),
    ("unknown else", [{"id": "c", "type": "condition", "condition": "true", "next": "a",
                       "config": {"else": "nowhere"}}, fn("a")], "steps[0].config.else", "unknown step"),
    ("unknown onError", [fn("a", config={"onError": "x"})], "steps[0].config.onError", "unknown step"),
    ("unreachable", [fn("a"), fn("b")], "steps[1]", "unreachable"),
    ("cycle", [fn("a", "b"), fn("b", "a")], "steps[0].next", "cycle"),
    ("unknown function", [{"id": "a", "type": "function", "function": "no-such"}],
     "steps[0].function", "Unknown function 'no-such'"),
    ("bad expression", [{"id": "c", "type": "condition", "condition": "result.total >", "next": "a"},
                        fn("a")], "steps[0].condition", ""),
    ("unknown type", [{"id": "a", "type": "teleport"}], "steps[0].type", "Unknown step type"),
    ("duplicate id", [fn("a", "a2"), {**fn("a"), "id": "a"}], "steps[1].id", "Duplicate"),
    ("bad retries", [fn("a", config={"retries": -1})], "steps[0].config.retries", "whole number"),
    ("loop without items", [{"id": "l", "type": "loop", "next": "a"}, fn("a")],
     "steps[0].config.items", "expression"),
    ("human without approvers", [{"id": "h", "type": "human", "config": {}}],
     "steps[0].config.approvers", "approver"),
    ("no steps", [], "steps", "at least one step"),
]


@pytest.mark.parametrize("label,steps,path,message", CASES, ids=[c[0] for c in CASES])
def test_invalid_definition_is_refused_with_path(label, steps, path, message):
    with pytest.raises(DefinitionInvalidError) as caught:
        process_save(slug="bad", name="Bad", definition={"steps": steps, "triggers": []})
    assert path in caught.value.fields, caught.value.fields
    assert message in " ".join(caught.value.fields[path])
    assert not ApiProcess.objects.exists() and not ProcessVersion.objects.exists()


def test_bad_trigger_condition_and_missing_status_are_refused():
    definition = {"steps": [fn("a")], "triggers": [
        {"type": "status", "config": {"entityType": "order"}, "condition": "event.data.total >"}]}
    with pytest.raises(DefinitionInvalidError) as caught:
        process_save(slug="bad", name="Bad", definition=definition)
    assert {"triggers[0].config.status", "triggers[0].condition"} <= set(caught.value.fields)


def test_loop_body_may_lead_back_to_its_loop():
    definition = {"steps": [
        {"id": "each", "type": "loop", "next": "body", "config": {"items": "input.xs"}},
        fn("body", "each")]}
    process = process_save(slug="loopy", name="Loopy", definition=definition)
    assert process.current_version.number == 1


def test_saving_a_changed_definition_makes_a_new_version_and_runs_keep_theirs():
    from automation.models import Run
    from automation.services.runs import run_start

    process = process_save(slug="p", name="P", definition={"steps": [fn("a")]})
    run, _ = run_start(process=process, trigger={"type": "manual"})
    process = process_save(slug="p", name="P", definition={"steps": [fn("a", "b"), fn("b")]})
    same = process_save(slug="p", name="P renamed", definition={"steps": [fn("a", "b"), fn("b")]})
    assert process.current_version.number == 2 and same.current_version.number == 2
    assert Run.objects.get(pk=run.pk).version.number == 1
