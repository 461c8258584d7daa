"""Each definition shape runs to the end (sync queue: the same executor, inline)."""

import pytest

from automation.models import ApprovalRequest, Run, StepRun
from automation.services.approvals import approval_decide, approvals_expire
from automation.services.runs import run_retry, run_start

pytestmark = pytest.mark.django_db(transaction=True)


def start(process, input=None):
    run, created = run_start(process=process, trigger={"type": "manual"}, input=input or {})
    assert created
    run.refresh_from_db()
    return run


def f(step_id, nxt=None, function="test.record", **config):
    step = {"id": step_id, "type": "function", "function": function}
    if nxt:
        step["next"] = nxt
    if config:
        step["config"] = config
    return step


def test_sequential_runs_each_step_once_in_order(make_process, calls):
    process = make_process([f("a", "b"), f("b", "c"), f("c")])
    run = start(process, {"n": 1})
    assert run.status == Run.Status.COMPLETED
    assert [c[0] for c in calls] == ["a", "b", "c"]
    assert run.result["step"] == "c"
    assert calls[1][1]["step"] == "a"  # result of the step before


def test_condition_with_else(make_process, calls):
    steps = [
        {"id": "calc", "type": "function", "function": "transform",
         "config": {"params": {"output": {"total": "input.quantity * input.price"}}}, "next": "check"},
        {"id": "check", "type": "condition", "condition": "result.total > 10000", "next": "big",
         "config": {"else": "small"}},
        f("big"), f("small"),
    ]
    process = make_process(steps)
    assert start(process, {"quantity": 3, "price": 10}).result["step"] == "small"
    assert start(process, {"quantity": 3, "price": 5000}).result["step"] == "big"
    assert [c[0] for c in calls] == ["small", "big"]
    check = StepRun.objects.filter(step_id="check").order_by("id").first()
    assert check.output == {"total": 30} and check.state["value"] is False


def test_fan_out_and_join_runs_the_join_exactly_once(make_process, calls):
    steps = [{"id": "split", "type": "parallel", "next": ["left", "right"]},
             f("left", "join"), f("right", "mid"), f("mid", "join"), f("join")]
    run = start(make_process(steps))
    assert run.status == Run.Status.COMPLETED
    assert [c[0] for c in calls].count("join") == 1
    join_input = [c[1] for c in calls if c[0] == "join"][0]
    assert set(join_input) == {"left", "mid"}


def test_loop_stops_at_max_iterations_and_says_so(make_process, calls):
    steps = [{"id": "each", "type": "loop", "next": "body",
              "config": {"items": "input.items", "maxIterations": 10, "then": "after"}},
             {"id": "body", "type": "function", "function": "transform",
              "config": {"params": {"output": {"double": "item * 2", "i": "index"}}}},
             f("after")]
    run = start(make_process(steps), {"items": list(range(25))})
    assert run.status == Run.Status.COMPLETED
    loop = StepRun.objects.get(run=run, step_id="each")
    assert loop.output == [{"double": i * 2, "i": i} for i in range(10)]
    assert any("stopped at 10 of 25" in line["message"] for line in loop.logs)
    assert StepRun.objects.filter(run=run, step_id="body").count() == 10
    assert calls == [("after", loop.output)]


APPROVAL = [
    {"id": "ask", "type": "human", "next": "done",
     "config": {"approvers": ["manager@example.com"], "timeout": 86400000, "requiredApprovals": 1,
                "onTimeout": "expired"}},
    f("done"), f("expired"),
]


@pytest.mark.parametrize("approved", [True, False])
def test_human_approval_approved_or_rejected(make_process, calls, approved):
    run = start(make_process(APPROVAL))
    assert run.status == Run.Status.WAITING
    approval = ApprovalRequest.objects.get(run=run)
    approval_decide(approval=approval, approved=approved, comment="ok", decided_by="manager@example.com")
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED
    seen = run.result["seen"]
    assert {k: seen[k] for k in ("approved", "comment", "data", "decidedBy", "comments")} == {
        "approved": approved, "comment": "ok", "data": {}, "decidedBy": "manager@example.com",
        "comments": ["ok"]}
    assert seen["decidedAt"] and len(seen["decisions"]) == 1


def test_human_approval_timeout_goes_to_on_timeout(make_process, calls):
    from datetime import timedelta

    from django.utils import timezone

    run = start(make_process(APPROVAL))
    assert approvals_expire(now=timezone.now() + timedelta(days=2)) == 1
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED and calls[0][0] == "expired"
    assert ApprovalRequest.objects.get(run=run).status == ApprovalRequest.Status.TIMED_OUT


def test_approval_by_someone_else_is_refused(make_process):
    from automation.exceptions import ApprovalNotAllowedError

    run = start(make_process(APPROVAL))
    with pytest.raises(ApprovalNotAllowedError):
        approval_decide(approval=ApprovalRequest.objects.get(run=run), approved=True,
                        decided_by="intruder@example.com")
    run.refresh_from_db()
    assert run.status == Run.Status.WAITING


def test_retries_then_success(make_process, calls):
    run = start(make_process([f("pay", function="test.flaky", retries=3, params={"failures": 2})]))
    assert run.status == Run.Status.COMPLETED
    step = StepRun.objects.get(run=run)
    assert step.attempt == 3 and run.result == {"calls": 3}
    assert sum("retrying" in line["message"] for line in step.logs) == 2


def test_always_failing_goes_to_on_error(make_process, calls):
    steps = [f("pay", function="test.boom", retries=1, onError="alert"), f("alert")]
    run = start(make_process(steps))
    assert run.status == Run.Status.COMPLETED
    assert calls == [("pay", "boom"), ("pay", "boom"), ("alert", {
        "error": {"message": "RuntimeError: the warehouse API said no", "code": "function_error",
                  "step": "pay"}, "input": {}})]


def test_failed_run_records_error_and_retry_from_failed_step_after_fix(make_process, calls):
    steps = [f("first", "pay"), f("pay", "last", function="test.flaky", params={"failures": 1, "key": "k"}),
             f("last")]
    run = start(make_process(steps))
    assert run.status == Run.Status.FAILED
    assert run.error == {"message": "RuntimeError: flaky failure 1", "step": "pay", "code": "function_error"}
    retried = run_retry(run=run)  # "the fix": the flaky function now succeeds
    retried.refresh_from_db()
    assert retried.status == Run.Status.COMPLETED and retried.rerun_of == run
    assert [c[0] for c in calls] == ["first", "pay", "pay", "last"]


def test_redelivered_task_does_not_run_a_step_twice(make_process, calls):
    from automation.tasks import step_execute

    run = start(make_process([f("a")]))
    step = StepRun.objects.get(run=run)
    step_execute(step.pk)
    step_execute(step.pk)
    assert calls == [("a", {})] and StepRun.objects.get(pk=step.pk).attempt == 1
