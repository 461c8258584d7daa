"""A real qcluster process runs the engine (ORM broker on SQLite, Redis broker when
REDIS_URL is set, as in CI's PostgreSQL lane)."""

import pytest

from automation.models import Run, StepRun
from automation.services.processes import process_save
from entities.services import entity_create
from tests.worker import Worker, sweep_until_finished, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def three_steps(slow_middle: bool = False):
    middle = ({"id": "b", "type": "function", "function": "worker.slow", "next": "c",
               "config": {"params": {"seconds": 3}}} if slow_middle
              else {"id": "b", "type": "function", "function": "worker.effect", "next": "c"})
    return [{"id": "a", "type": "function", "function": "worker.effect", "next": "b"}, middle,
            {"id": "c", "type": "function", "function": "worker.effect"}]


def test_order_saved_to_completed_three_step_run(order_type, effects, queued_mode, tmp_path):
    import tests.automation.worker_functions  # noqa: F401  (registers the functions here too)

    process_save(slug="on-received", name="On received", entity_type=order_type,
                 definition={"steps": three_steps(), "triggers": [
                     {"type": "status", "config": {"entityType": "order", "status": "received"}}]})
    worker = Worker(tmp_path / "worker.log")
    try:
        order = entity_create(entity_type=order_type, reference="W-1",
                              data={"customer": {"name": "Ada"}, "total": 10})
        run = wait_for(lambda: Run.objects.filter(entity=order, status=Run.Status.COMPLETED).first(),
                       60, message="the run to complete")
    finally:
        worker.stop()
    assert Run.objects.filter(entity=order).count() == 1
    assert sorted(effects.read_text().split()) == sorted(f"{run.pk}:{s}" for s in "abc")


def test_worker_killed_mid_step_run_completes_with_each_effect_once(order_type, effects,
                                                                     queued_mode, tmp_path):
    import tests.automation.worker_functions  # noqa: F401

    env = {"ENTITYFLOW_STEP_LEASE_SECONDS": "5", "Q_TIMEOUT": "4", "Q_RETRY": "6"}
    process_save(slug="slow", name="Slow", definition={"steps": three_steps(slow_middle=True)})
    from automation.models import ApiProcess
    from automation.services.runs import run_start

    first = Worker(tmp_path / "w1.log", **env)
    try:
        run, _ = run_start(process=ApiProcess.objects.get(slug="slow"), trigger={"type": "manual"})
        wait_for(lambda: StepRun.objects.filter(run=run, step_id="b", status="running").exists(), 60,
                 message="the slow step to start")
    finally:
        first.kill()
    assert effects.read_text().split() == [f"{run.pk}:a"]
    second = Worker(tmp_path / "w2.log", **env)
    try:
        sweep_until_finished(run, message="the run to finish after the kill")
    finally:
        second.stop()
    assert run.status == Run.Status.COMPLETED, run.error
    assert sorted(effects.read_text().split()) == sorted(f"{run.pk}:{s}" for s in "abc")
    assert StepRun.objects.get(run=run, step_id="b").attempt == 2


def test_cheap_steps_run_straight_after_their_predecessor_on_the_worker(effects, queued_mode,
                                                                        tmp_path):
    import tests.automation.worker_functions  # noqa: F401
    from automation.models import ApiProcess
    from automation.services.runs import run_start

    steps = [{"id": "a", "type": "function", "function": "worker.effect", "next": "check"},
             {"id": "check", "type": "condition", "condition": "result.step == 'a'", "next": "shape",
              "config": {"else": "c"}},
             {"id": "shape", "type": "function", "function": "transform", "next": "c",
              "config": {"params": {"output": {"from": "result.step", "n": "input.n"}}}},
             {"id": "c", "type": "function", "function": "worker.effect"}]
    process_save(slug="cheap", name="Cheap", definition={"steps": steps})
    worker = Worker(tmp_path / "worker.log")
    try:
        run, _ = run_start(process=ApiProcess.objects.get(slug="cheap"), trigger={"type": "manual"},
                           input={"n": 3})
        wait_for(lambda: Run.objects.filter(pk=run.pk, status__in=Run.FINISHED).exists(), 60,
                 message="the run to finish")
    finally:
        worker.stop()
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED, run.error
    assert StepRun.objects.get(run=run, step_id="shape").output == {"from": "a", "n": 3}
    assert sorted(effects.read_text().split()) == sorted(f"{run.pk}:{s}" for s in "ac")


def test_step_past_its_time_limit_is_stopped_retried_then_failed(effects, queued_mode, tmp_path):
    import tests.automation.worker_functions  # noqa: F401
    from automation.models import ApiProcess
    from automation.services.runs import run_start

    steps = [{"id": "slow", "type": "function", "function": "worker.slow",
              "config": {"timeout": 1000, "retries": 1, "params": {"seconds": 30}}}]
    process_save(slug="too-slow", name="Too slow", definition={"steps": steps})
    worker = Worker(tmp_path / "worker.log", ENTITYFLOW_LEASE_MARGIN_SECONDS="1", Q_TIMEOUT="20",
                    Q_RETRY="40")
    try:
        run, _ = run_start(process=ApiProcess.objects.get(slug="too-slow"), trigger={"type": "manual"})

        sweep_until_finished(run, message="the run to fail")
    finally:
        worker.stop()
    step = StepRun.objects.get(run=run)
    assert run.status == Run.Status.FAILED
    assert run.error["code"] == "step_timeout" and "time limit of 1s" in run.error["message"]
    assert step.attempt == 3  # two attempts ran (retries 1), the third claim gave up
    assert effects.read_text() == ""  # the function never got to its side effect
