"""Pause and resume by a person (docs/user-guide/operating-runs.md#pause-and-resume): new
starts are held, a running run stops at its next step boundary (the next step is written,
not run) and resume continues it; the same for every process at once."""

import pytest

from automation.models import ApprovalRequest, HeldStart, Run, StepRun
from automation.services import breaker
from automation.services.approvals import approval_decide
from automation.services.runs import process_resume, run_start
from automation.store.pauses import HELD_UNTIL

pytestmark = pytest.mark.django_db(transaction=True)

APPROVE_THEN_RECORD = [
    {"id": "ok", "type": "human", "config": {"approvers": ["someone@example.com"]},
     "next": "b"},
    {"id": "b", "type": "function", "function": "test.record", "next": "c"},
    {"id": "c", "type": "function", "function": "test.record"}]


def waiting_run(process) -> Run:
    run, _ = run_start(process=process, trigger={"type": "manual"})
    run.refresh_from_db()
    assert run.status == Run.Status.WAITING  # at the human step
    return run


def approve(run: Run) -> None:
    approval_decide(approval=ApprovalRequest.objects.get(run=run), approved=True,
                    decided_by="someone@example.com")


def test_a_paused_process_stops_its_run_at_the_next_step_and_resume_continues_it(
        make_process, calls):
    process = make_process(APPROVE_THEN_RECORD)
    run = waiting_run(process)
    paused = breaker.process_pause(process=process, reason="vendor maintenance")
    assert paused.paused and paused.reason == "vendor maintenance"
    approve(run)  # the human step ends; its successor is written, and held
    run.refresh_from_db()
    held = StepRun.objects.get(run=run, step_id="b")
    assert run.status == Run.Status.WAITING and calls == []
    assert held.status == StepRun.Status.PENDING and held.not_before == HELD_UNTIL
    assert held.attempt == 0 and held.logs[-1]["event"] == "held"
    assert "paused" in held.logs[-1]["message"]
    assert not StepRun.objects.filter(run=run, step_id="c").exists()
    with pytest.raises(breaker.ProcessPausedError):  # new starts are held
        run_start(process=process, trigger={"type": "manual"}, input={"n": 2})

    done = process_resume(process=process, held="release")
    assert done == {"released": 1, "discarded": 0, "continued": 1}
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED, run.error
    assert [step for step, _ in calls].count("b") == 1
    released = HeldStart.objects.get().run
    released.refresh_from_db()
    assert released.status == Run.Status.WAITING  # the held start started, at its human step


def test_pause_all_and_resume_all(make_process, calls):
    first, second = make_process(APPROVE_THEN_RECORD), make_process(APPROVE_THEN_RECORD)
    runs = [waiting_run(first), waiting_run(second)]
    assert breaker.processes_pause_all(reason="deploy") == 2
    assert breaker.processes_pause_all(reason="again") == 0  # already paused
    for run in runs:
        approve(run)
    assert set(StepRun.objects.filter(step_id="b").values_list("not_before", flat=True)) == {
        HELD_UNTIL}
    assert process_resume_all() == {"resumed": 2, "released": 0, "discarded": 0,
                                     "continued": 2}
    assert set(Run.objects.values_list("status", flat=True)) == {Run.Status.COMPLETED}


def process_resume_all():
    from automation.services.runs import processes_resume_all

    return processes_resume_all(held="release")


def test_resume_of_a_process_that_is_not_paused_is_refused(make_process):
    from automation.exceptions import RunStateError

    process = make_process(APPROVE_THEN_RECORD)
    with pytest.raises(RunStateError, match="is not paused"):
        process_resume(process=process, held="release")


def test_the_sweeper_continues_a_step_held_by_a_hold_that_raced_the_resume(make_process, calls):
    from automation.models import ProcessBreaker
    from automation.services.sweeper import steps_sweep
    from automation.store import pauses

    process = make_process(APPROVE_THEN_RECORD)
    run = waiting_run(process)
    breaker.process_pause(process=process, reason="deploy")
    approve(run)
    assert StepRun.objects.get(run=run, step_id="b").not_before == HELD_UNTIL
    # the resume committed between a worker's check and its hold: unpaused, still held
    ProcessBreaker.objects.update(paused_at=None)
    pauses.forget()
    assert steps_sweep() == 1
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED, run.error
