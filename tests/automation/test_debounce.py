"""Debounce (docs/user-guide/concurrency.md#debounce): a burst of saves of one entity
starts one run, with the latest state (trailing, on real workers), or only the first
one does (leading); an owed debounce is a row the sweeper fires if its task was lost."""

from datetime import timedelta

import pytest

from automation.exceptions import DefinitionInvalidError
from automation.models import DebounceMark, ProcessBreaker, Run
from automation.services import debounce
from automation.services.processes import process_save
from entities.models import EntityEvent
from entities.services import entity_create, entity_update

pytestmark = pytest.mark.django_db(transaction=True)

ORDER = {"customer": {"name": "Ada"}, "total": 1}
NOOP = [{"id": "done", "type": "function", "function": "noop"}]


def debounced(order_type, rule: dict, steps=NOOP):
    process = process_save(slug="debounced", name="Debounced", entity_type=order_type,
                           definition={"steps": steps, "triggers": [{
                               "type": "event", "debounce": rule,
                               "config": {"eventType": "entity.updated",
                                          "entityType": "order"}}]})
    ProcessBreaker.objects.create(process=process, limits={"perEntityPerMinute": 1000})
    return process


def burst(order_type, reference: str, saves: int):
    order = entity_create(entity_type=order_type, reference=reference, data=ORDER)
    for total in range(2, 2 + saves):
        order = entity_update(entity=order, data={**ORDER, "total": total})
    return order


def test_leading_starts_the_first_and_drops_the_rest_of_the_window(order_type):
    process = debounced(order_type, {"windowMs": 60000, "mode": "leading"})
    order = burst(order_type, "D-1", 5)
    [run] = Run.objects.filter(process=process)
    assert run.input["total"] == 2 and run.status == "completed"
    last = EntityEvent.objects.filter(entity=order).latest("id")
    assert last.skipped[0]["reason"].startswith("Debounced (leading, 60000 ms)")
    DebounceMark.objects.update(due_at=DebounceMark.objects.get().due_at - timedelta(minutes=2))
    entity_update(entity=order, data={**ORDER, "total": 99})  # the window is over
    assert Run.objects.filter(process=process).count() == 2


def test_an_owed_trailing_debounce_is_fired_by_the_sweeper(order_type, monkeypatch):
    monkeypatch.setattr(debounce, "SYNC_WAIT_SECONDS", 0)  # nothing inline: the sweeper's job
    process = debounced(order_type, {"windowMs": 1000})
    burst(order_type, "D-2", 4)
    mark = DebounceMark.objects.get()
    assert mark.owed and not Run.objects.filter(process=process).exists()
    assert debounce.debounces_sweep() == 0  # not due yet
    DebounceMark.objects.update(due_at=mark.due_at - timedelta(seconds=5))
    assert debounce.debounces_sweep() == 1
    [run] = Run.objects.filter(process=process)
    assert run.input["total"] == 5 and run.trigger["debounced"] is True
    assert debounce.debounces_sweep() == 0 and not DebounceMark.objects.get().owed


@pytest.mark.parametrize(("rule", "path", "message"), [
    ({}, "triggers[0].debounce.windowMs", "debounce needs windowMs"),
    ({"windowMs": 0}, "triggers[0].debounce.windowMs", "windowMs must be a whole number"),
    ({"windowMs": 10, "mode": "middle"}, "triggers[0].debounce.mode",
     "mode must be one of trailing, leading."),
    ({"windowMs": 10, "key": "steps.x.y +"}, "triggers[0].debounce.key", ""),
    ({"windowMs": 10, "every": 1}, "triggers[0].debounce.every", "Unknown key 'every'"),
    ("2s", "triggers[0].debounce", "debounce must be an object"),
])
def test_bad_debounce_is_refused_at_save(order_type, rule, path, message):
    with pytest.raises(DefinitionInvalidError) as err:
        debounced(order_type, rule)
    assert any(message in m for m in err.value.fields[path]), err.value.fields


@pytest.mark.slow
def test_a_burst_starts_one_run_with_the_last_state_on_real_workers(order_type, settings,
                                                                    tmp_path):
    from tests.worker import Worker, wait_for

    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    process = debounced(order_type, {"windowMs": 2000, "mode": "trailing"})
    worker = Worker(tmp_path / "worker.log")
    try:
        burst(order_type, "D-3", 20)
        wait_for(lambda: Run.objects.filter(process=process, status="completed").exists(), 90,
                 message="the debounced run")
        wait_for(lambda: not DebounceMark.objects.filter(owed=True).exists(), 30,
                 message="the debounce settled")
    finally:
        worker.stop()
    [run] = Run.objects.filter(process=process)
    assert run.input["total"] == 21 and run.entity.data["total"] == 21
