"""Durable waits on real workers (docs/user-guide/waits.md): `wait` and `waitForEvent`
runs whose worker is killed while they wait complete, exactly once, on a new worker; and
while they wait no worker is held (one worker runs other runs meanwhile). ORM broker on
SQLite, Redis when REDIS_URL is set, as in CI's PostgreSQL lane."""

import pytest
from django_q.conf import Conf

from automation.models import ApiProcess, Run, StepRun
from automation.services.processes import process_save
from automation.services.runs import run_start
from automation.store.doorbell import queue_broker
from entities.outbox import event_publish
from tests.worker import Worker, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def effect(step_id: str, nxt: str | None = None) -> dict:
    step = {"id": step_id, "type": "function", "function": "worker.effect"}
    return {**step, "next": nxt} if nxt else step


def hear(timeout: str) -> list:
    return [effect("a", "hear"),
            {"id": "hear", "type": "waitForEvent", "next": "after", "config": {
                "event": "payment.received", "condition": "event.data.order == input.order",
                "timeout": timeout, "onTimeout": "late"}},
            effect("after"), effect("late")]


def start(slug: str, **input) -> Run:
    run, _ = run_start(process=ApiProcess.objects.get(slug=slug), trigger={"type": "manual"},
                       input=input)
    return run


def statuses(runs: list[Run]) -> list[str]:
    return [Run.objects.get(pk=run.pk).status for run in runs]


def test_waits_survive_a_worker_restart_and_hold_no_worker(effects, queued_mode, monkeypatch,
                                                            tmp_path):
    monkeypatch.setattr(Conf, "SYNC", False)  # this process enqueues the wakes; workers run
    process_save(slug="pause", name="Pause", definition={"steps": [
        effect("a", "pause"), {"id": "pause", "type": "wait", "config": {"for": "10s"},
                               "next": "c"}, effect("c")]})
    process_save(slug="hear", name="Hear", definition={"steps": hear("1h")})
    process_save(slug="deaf", name="Deaf", definition={"steps": hear("PT10S")})
    process_save(slug="quick", name="Quick", definition={"steps": [effect("q")]})

    first = Worker(tmp_path / "w1.log", Q_WORKERS="1")
    try:
        waiting = [start("pause"), start("hear", order="A-1"), start("deaf", order="B-2")]
        wait_for(lambda: statuses(waiting) == ["waiting"] * 3, 60, interval=0.2,
                 message="the three runs to wait")
        # One worker, three runs waiting: other runs still go through it.
        quick = [start("quick") for _ in range(3)]
        wait_for(lambda: statuses(quick) == ["completed"] * 3, 60, interval=0.2,
                 message="other runs to complete while three wait")
        assert statuses(waiting) == ["waiting"] * 3
    finally:
        first.kill()  # SIGKILL during the waits
    event_publish(type="payment.received", data={"order": "A-1"}, source="bank")  # no worker
    event_publish(type="payment.received", data={"order": "nobody's"}, source="bank")
    assert queue_broker().delayed_size()  # the wakes wait in the broker, not in a worker

    second = Worker(tmp_path / "w2.log")
    try:  # the new worker takes the wakes' delayed doorbells when they are due
        wait_for(lambda: all(status in Run.FINISHED for status in statuses(waiting)), 120,
                 interval=0.5, message="the waiting runs to finish on a new worker")
    finally:
        second.stop()
    assert statuses(waiting) == ["completed"] * 3
    pause, heard, deaf = (run.pk for run in waiting)
    lines = effects.read_text().split()
    expected = [f"{pause}:a", f"{pause}:c", f"{heard}:a", f"{heard}:after", f"{deaf}:a",
                f"{deaf}:late", *(f"{run.pk}:q" for run in quick)]
    assert sorted(lines) == sorted(expected)  # each effect exactly once
    assert StepRun.objects.get(run_id=heard, step_id="hear").output["data"] == {"order": "A-1"}
    assert StepRun.objects.get(run_id=deaf, step_id="hear").output == {"timedOut": True}
    for run_id, step_id in ((pause, "pause"), (heard, "hear"), (deaf, "hear")):
        step = StepRun.objects.get(run_id=run_id, step_id=step_id)
        assert (step.status, step.attempt) == ("completed", 1)  # claimed once, woken once


def test_a_two_second_wait_is_woken_on_time_on_a_real_worker(effects, queued_mode, monkeypatch,
                                                            tmp_path):
    """The wake is a delayed doorbell (store.delayed) a worker takes within about a poll
    interval of its time; django-q2's scheduler, which looks every 30 s, is not involved.
    A generous bound: a late wake by that scheduler would miss it by far."""
    monkeypatch.setattr(Conf, "SYNC", False)
    process_save(slug="pause", name="Pause", definition={"steps": [
        effect("a", "pause"), {"id": "pause", "type": "wait", "config": {"for": "2s"},
                               "next": "c"}, effect("c")]})
    worker = Worker(tmp_path / "w.log")
    try:
        run = start("pause")
        wait_for(lambda: statuses([run]) == ["completed"], 60, interval=0.2,
                 message="the run to go on after its wait")
    finally:
        worker.stop()
    paused = StepRun.objects.get(run=run, step_id="pause")
    after = StepRun.objects.get(run=run, step_id="c")
    gone_on = (after.started_at - paused.started_at).total_seconds()
    print(f"\na 2 s wait went on after {gone_on:.2f} s")  # the figure; the bound is generous
    assert gone_on < 10
