"""A new run and its first step run are built from their values in field order
(services.runs._NewRow, docs/performance.md "The API trigger's rows built in field
order"): each must be the instance `Model(**values)` builds, with every default, related
object and fresh mutable default."""

import pytest

from automation.models import Run, StepRun
from automation.services.processes import process_save
from automation.services.runs import _new_rows, run_start
from entities.models import Entity

pytestmark = pytest.mark.django_db


def _values(row) -> dict:
    return {field.attname: getattr(row, field.attname) for field in type(row)._meta.concrete_fields}


def _process(slug="rows", **more):
    return process_save(slug=slug, name=slug, definition={
        "steps": [{"id": "a", "type": "function", "function": "noop"}],
        "triggers": [{"type": "manual"}], **more})


def test_the_rows_are_what_the_models_keywords_build(order_type):
    process = _process()
    entity = Entity.objects.create(entity_type=order_type, reference="o-1", data={})
    run, step_run, first = _new_rows(process=process, trigger={"type": "manual"},
                                     input={"n": 1}, parameters={"p": 2}, entity=entity,
                                     idempotency_key="k", priority="high")
    expected = Run(id=run.id, process=process, version_id=process.current_version_id,
                   trigger={"type": "manual"}, input={"n": 1}, parameters={"p": 2},
                   entity=entity, event=None, batch=None, idempotency_key="k",
                   created_by=None, parent_run_id=None, parent_step_run=None,
                   priority="high", status=Run.Status.PENDING)
    assert _values(run) == _values(expected)
    assert run._state.adding and run._state.db == expected._state.db
    assert run.process is process and run.entity is entity  # held, not read again
    expected_step = StepRun(run=expected, step_id=first.id, step_type=first.type,
                            input=expected.input, priority="high")
    assert _values(step_run) == _values(expected_step)
    assert step_run.run is run and step_run.step_id == "a" and step_run.logs == []


def test_mutable_defaults_are_fresh_for_each_row():
    process = _process()
    one, one_step, _ = _new_rows(process=process, trigger={"type": "manual"})
    two, two_step, _ = _new_rows(process=process, trigger={"type": "manual"})
    assert one.id != two.id
    assert one.input == {} and one.input is not two.input
    assert one_step.logs is not two_step.logs and one_step.state is not two_step.state


def test_a_started_run_and_step_read_back_as_built():
    process = _process()
    run, created = run_start(process=process, trigger={"type": "manual"}, input={"x": [1]})
    assert created
    stored = Run.objects.get(pk=run.pk)
    assert _values(stored) | {"created_at": None} == _values(run) | {"created_at": None}
    [step] = StepRun.objects.filter(run=stored)
    assert (step.step_id, step.input, step.status, step.logs) == ("a", {"x": [1]}, "pending", [])


def test_an_unknown_value_is_an_error():
    from automation.services.runs import _RUN_ROW

    with pytest.raises(TypeError, match="no field proces"):
        _RUN_ROW.new(proces=1)
