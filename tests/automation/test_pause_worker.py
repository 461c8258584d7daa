"""Pause and resume with a real qcluster: a running multi-step run stops at its next step
boundary, new starts are held, and resume completes the run and starts the held ones
(docs/user-guide/operating-runs.md#pause-and-resume); one process, then all of them."""

import pytest

from automation.models import ApiProcess, HeldStart, Run, StepRun
from automation.services import breaker
from automation.services.processes import process_save
from automation.services.runs import process_resume, processes_resume_all, run_start
from automation.store.pauses import HELD_UNTIL
from tests.worker import Worker, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def slow_steps(slug: str) -> ApiProcess:
    step = {"type": "function", "function": "worker.slow", "config": {"params": {"seconds": 1.5}}}
    return process_save(slug=slug, name=slug.title(), definition={"steps": [
        {"id": "a", **step, "next": "b"}, {"id": "b", **step, "next": "c"}, {"id": "c", **step}]})


def check_stopped(run: Run) -> None:
    """Stopped at a step boundary: one step written and held, not run (`b`, or `a` when
    the pause came between a's claim and its start); the steps before it completed and
    none after it written."""
    held = wait_for(lambda: StepRun.objects.filter(run=run, not_before=HELD_UNTIL).first(),
                    60, interval=0.1, message="the run to stop at a step boundary")
    run.refresh_from_db()
    assert run.status == Run.Status.WAITING
    assert held.status == StepRun.Status.PENDING and held.started_at is None
    assert held.logs[-1]["event"] == "held"
    order = "abc"
    before, after = order[:order.index(held.step_id)], order[order.index(held.step_id) + 1:]
    steps = dict(StepRun.objects.filter(run=run).values_list("step_id", "status"))
    assert steps == {**{s: StepRun.Status.COMPLETED for s in before},
                     held.step_id: StepRun.Status.PENDING}
    assert not set(steps) & set(after)


def completed(run: Run) -> bool:
    run.refresh_from_db()
    return run.status == Run.Status.COMPLETED


@pytest.mark.parametrize("everything", [False, True], ids=["one process", "all processes"])
def test_pause_stops_a_running_run_at_the_step_boundary_and_resume_completes_it(
        everything, effects, queued_mode, tmp_path):
    import tests.automation.worker_functions  # noqa: F401  (registers them here too)

    process = slow_steps("slow")
    worker = Worker(tmp_path / "worker.log")
    try:
        run, _ = run_start(process=process, trigger={"type": "manual"})
        wait_for(lambda: StepRun.objects.filter(run=run, step_id="a", status="running").exists(),
                 60, message="step a to be claimed")
        if everything:
            assert breaker.processes_pause_all(reason="deploy") == 1
        else:
            breaker.process_pause(process=process, reason="vendor maintenance")
        check_stopped(run)
        with pytest.raises(breaker.ProcessPausedError):
            run_start(process=process, trigger={"type": "manual"}, input={"n": 2})
        assert HeldStart.objects.filter(status="held").count() == 1
        if everything:
            done = processes_resume_all(held="release")
            assert done == {"resumed": 1, "released": 1, "discarded": 0, "continued": 1}
        else:
            done = process_resume(process=process, held="release")
            assert done == {"released": 1, "discarded": 0, "continued": 1}
        wait_for(lambda: completed(run), 60, message="the paused run to complete")
        released = HeldStart.objects.get().run
        wait_for(lambda: completed(released), 60, message="the held start to complete")
    finally:
        worker.stop()
    lines = effects.read_text().split()
    assert sorted(line for line in lines if line.startswith(str(run.pk))) == sorted(
        f"{run.pk}:{s}" for s in "abc")  # each step once: b held, never run twice
