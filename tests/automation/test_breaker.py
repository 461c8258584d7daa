"""The circuit breaker: a process whose step updates its own entity, re-triggering
itself, is paused at the threshold; the held starts are kept, `process.paused` is
delivered, and after the definition is fixed a resume releases them and they complete
(docs/user-guide/operating-runs.md#circuit-breaker)."""

import pytest

from automation.models import HeldStart, ProcessBreaker, Run, WebhookDelivery
from automation.services import breaker
from automation.services.processes import process_save
from automation.services.runs import process_resume, run_start
from automation.services.webhooks import webhook_subscription_create
from entities.services import entity_create
from tests.integrations.fakes.echo import EchoServer

pytestmark = pytest.mark.django_db(transaction=True)

ORDER = {"customer": {"name": "Ada"}, "total": 5}
TRIGGER = {"type": "event", "config": {"eventType": "entity.updated", "entityType": "order"}}


def loop_definition(*, fixed: bool = False) -> dict:
    bump = {"id": "bump", "type": "function", "function": "entity.update",
            "config": {"params": {"set": {"total": "entity.data.total + 1"}}}}
    note = {"id": "note", "type": "function", "function": "noop"}
    return {"steps": [note if fixed else bump], "triggers": [TRIGGER]}


@pytest.fixture
def receiver():
    server = EchoServer().start()
    yield server
    server.stop()


def test_a_self_trigger_loop_is_paused_at_the_threshold_and_released_after_the_fix(
        order_type, receiver):
    webhook_subscription_create(url=f"{receiver.url}/ops", events=["process.paused"],
                                secret="s3cret-s3cret", owner="ops")
    process = process_save(slug="loop", name="Loop", entity_type=order_type,
                           definition=loop_definition())
    ProcessBreaker.objects.create(process=process, limits={"perEntityPerMinute": 5})
    order = entity_create(entity_type=order_type, reference="L-1", data=ORDER)
    run_start(process=process, trigger={"type": "manual"}, entity=order)  # the loop starts

    assert Run.objects.filter(process=process).count() == 5  # no more than the threshold
    state = ProcessBreaker.objects.get(process=process)
    assert state.paused and "perEntityPerMinute 5" in state.reason
    [held] = HeldStart.objects.filter(process=process)  # the 6th start, kept
    assert held.entity_id == order.pk and held.status == "held"
    [delivery] = WebhookDelivery.objects.filter(event="process.paused")
    assert delivery.status == "delivered" and delivery.payload["workflowDefinitionId"] == "loop"
    assert any(call.path == "/ops" for call in receiver.calls)

    process_save(slug="loop", name="Loop", entity_type=order_type,
                 definition=loop_definition(fixed=True))
    released = process_resume(process=process, held="release")
    assert released == {"released": 1, "discarded": 0, "continued": 0}
    held.refresh_from_db()
    assert held.status == "released" and held.run.status == Run.Status.COMPLETED
    assert held.run.version.number == 2
    assert not ProcessBreaker.objects.get(process=process).paused
    assert Run.objects.filter(process=process).count() == 6


def test_a_paused_process_holds_manual_starts_and_discard_drops_them(make_process):
    process = make_process([{"id": "a", "type": "function", "function": "noop"}])
    breaker.pause(process=process, reason="by hand")
    with pytest.raises(breaker.ProcessPausedError) as err:
        run_start(process=process, trigger={"type": "manual"}, input={"n": 1})
    assert err.value.held.input == {"n": 1} and not Run.objects.exists()
    assert process_resume(process=process, held="discard") == {
        "released": 0, "discarded": 1, "continued": 0}
    assert HeldStart.objects.get().status == "discarded" and not Run.objects.exists()
    run, _ = run_start(process=process, trigger={"type": "manual"})
    assert Run.objects.count() == 1


def test_error_rate_pauses_and_defaults_are_documented(make_process):
    process = make_process([{"id": "a", "type": "function", "function": "test.boom"}])
    ProcessBreaker.objects.create(process=process, limits={"errorRate": 0.5, "errorMinRuns": 3})
    breaker.WIDE_EVERY_SECONDS, saved = 0.0, breaker.WIDE_EVERY_SECONDS
    try:
        for _ in range(3):
            run_start(process=process, trigger={"type": "manual"})
        with pytest.raises(breaker.ProcessPausedError):
            run_start(process=process, trigger={"type": "manual"})
    finally:
        breaker.WIDE_EVERY_SECONDS = saved
    assert "errorRate 0.5" in ProcessBreaker.objects.get(process=process).reason
    assert breaker.limits_of(None) == breaker.DEFAULTS and all(breaker.DEFAULTS.values())


@pytest.mark.slow
def test_the_loop_is_stopped_at_the_threshold_on_real_workers(order_type, settings, tmp_path,
                                                               monkeypatch):
    from tests.worker import Worker, wait_for

    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    monkeypatch.setenv("ENTITYFLOW_TEST_EFFECTS", str(tmp_path / "effects.log"))
    process = process_save(slug="loop", name="Loop", entity_type=order_type,
                           definition=loop_definition())
    ProcessBreaker.objects.create(process=process, limits={"perEntityPerMinute": 4})
    workers = [Worker(tmp_path / "worker-1.log"), Worker(tmp_path / "worker-2.log")]
    try:
        order = entity_create(entity_type=order_type, reference="L-2", data=ORDER)
        run_start(process=process, trigger={"type": "manual"}, entity=order)
        wait_for(lambda: HeldStart.objects.filter(process=process).exists(), 90,
                 message="the loop to be held")
        wait_for(lambda: not Run.objects.filter(process=process).exclude(
            status__in=Run.FINISHED).exists(), 60, message="the started runs to finish")
        assert Run.objects.filter(process=process).count() == 4  # no more than the threshold
        assert ProcessBreaker.objects.get(process=process).paused

        process_save(slug="loop", name="Loop", entity_type=order_type,
                     definition=loop_definition(fixed=True))
        assert process_resume(process=process, held="release") == {
            "released": 1, "discarded": 0, "continued": 0}
        held = HeldStart.objects.get(process=process)
        wait_for(lambda: Run.objects.get(pk=held.run_id).status == Run.Status.COMPLETED, 60,
                 message="the released run to complete")
    finally:
        for worker in workers:
            worker.stop()
    assert Run.objects.filter(process=process).count() == 5
    assert not ProcessBreaker.objects.get(process=process).paused
