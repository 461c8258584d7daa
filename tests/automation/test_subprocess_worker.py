"""Sub-processes on real worker processes (tests/worker.py), as in production: the parent
step waits for its child without holding a worker, the child's end finishes it, a later
step uses the child's result; a failing child fails the parent step; cancelling the
parent cancels the child (docs/user-guide/sub-processes.md)."""

import pytest

from automation.models import Run, StepRun
from automation.services.processes import process_save
from automation.services.runs import run_cancel, run_start
from tests.worker import Worker, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def save(slug: str, steps: list[dict]):
    return process_save(slug=slug, name=slug, definition={"steps": steps, "triggers": []})


def parent_of(child: str):
    return save(f"{child}-parent", [
        {"id": "call", "type": "process", "config": {"process": child,
                                                     "input": {"n": "input.n + 1"}},
         "next": "use"},
        {"id": "use", "type": "function", "function": "transform",
         "config": {"params": {"output": {"got": "steps.call.output"}}}},
    ])


def finished(run: Run):
    def check():
        run.refresh_from_db()
        return run.status in Run.FINISHED
    return check


@pytest.fixture
def worker(queued_mode, effects, tmp_path):
    started = Worker(tmp_path / "worker.log")
    yield started
    started.stop()


def test_the_parent_completes_with_the_childs_result_on_real_workers(worker, effects):
    save("slow-child", [
        {"id": "work", "type": "function", "function": "worker.slow",
         "config": {"params": {"seconds": 1}}, "next": "answer"},
        {"id": "answer", "type": "function", "function": "transform",
         "config": {"params": {"output": {"doubled": "input.n * 2"}}}}])
    parent = parent_of("slow-child")
    run, _ = run_start(process=parent, trigger={"type": "manual"}, input={"n": 20})

    child = wait_for(lambda: Run.objects.filter(parent_run=run).first(), 60,
                     message="the child run")
    wait_for(lambda: StepRun.objects.filter(run=run, step_id="call",
                                            status=StepRun.Status.WAITING).exists(), 60,
             message="the parent step to wait")
    # while the child works, nothing of the parent holds a worker
    assert not StepRun.objects.filter(run=run, status=StepRun.Status.RUNNING).exists()
    wait_for(finished(run), 90, interval=0.2, message="the parent run to end")
    child.refresh_from_db()
    assert (run.status, run.result) == (Run.Status.COMPLETED, {"got": {"doubled": 42}}), run.error
    assert (child.status, child.input, child.parent_step_run.step_id) == (
        Run.Status.COMPLETED, {"n": 21}, "call")
    assert StepRun.objects.get(run=run, step_id="call").state["childRun"] == str(child.pk)
    assert effects.read_text().splitlines() == [f"{child.pk}:work"]


def test_a_failing_child_fails_the_parent_step_on_real_workers(worker):
    save("failing-child", [{"id": "boom", "type": "function", "function": "worker.fail",
                            "config": {"params": {"message": "stock service down"}}}])
    parent = parent_of("failing-child")
    run, _ = run_start(process=parent, trigger={"type": "manual"}, input={"n": 1})
    wait_for(finished(run), 90, interval=0.2, message="the parent run to end")
    call = StepRun.objects.get(run=run, step_id="call")
    assert run.status == Run.Status.FAILED and call.status == StepRun.Status.FAILED
    assert call.error["code"] == "subprocess_failed"
    assert "stock service down" in call.error["message"]
    assert not StepRun.objects.filter(run=run, step_id="use").exists()


def test_cancelling_the_parent_cancels_the_waiting_child_on_real_workers(worker):
    save("approval-child", [{"id": "ok", "type": "human",
                             "config": {"approvers": ["boss@example.com"]}}])
    parent = parent_of("approval-child")
    run, _ = run_start(process=parent, trigger={"type": "manual"}, input={"n": 1})
    child = wait_for(lambda: Run.objects.filter(parent_run=run, status=Run.Status.WAITING
                                                ).first(), 60, message="the child to wait")
    wait_for(lambda: Run.objects.filter(pk=run.pk, status=Run.Status.WAITING).exists(), 60,
             message="the parent to wait")
    run_cancel(run=run)
    child.refresh_from_db()
    run.refresh_from_db()
    assert (run.status, child.status) == (Run.Status.CANCELLED, Run.Status.CANCELLED)
    assert StepRun.objects.get(run=child, step_id="ok").status == StepRun.Status.CANCELLED
    assert child.approvals.get().status == "cancelled"
