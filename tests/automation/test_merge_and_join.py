"""A step reached only from mutually exclusive branches is a merge (it runs when the
taken branch arrives and sees that branch's result); a step two parallel branches reach
is an AND-join (it waits for both). Run on both store backends (the PostgreSQL lane)."""

import pytest

from automation.definitions import build_graph
from automation.models import ApprovalRequest, Run, StepRun
from automation.services.approvals import approval_decide
from automation.services.runs import run_start
from automation.views.graph import render_graph

pytestmark = pytest.mark.django_db(transaction=True)


def start(process, input=None):
    run, created = run_start(process=process, trigger={"type": "manual"}, input=input or {})
    assert created
    run.refresh_from_db()
    return run


def transform(step_id, nxt=None, **output):
    step = {"id": step_id, "type": "function", "function": "transform",
            "config": {"params": {"output": output}}}
    if nxt:
        step["next"] = nxt
    return step


APPROVAL = [
    {"id": "check", "type": "condition", "condition": "input.total > 100", "next": "approve",
     "config": {"else": "reject"}},
    transform("approve", "decide", approved="true", by="'rule'"),
    transform("reject", "decide", approved="false", by="'rule'"),
    {"id": "decide", "type": "condition", "condition": "result.approved", "next": "ship",
     "config": {"else": "hold"}},
    transform("ship", shipped="true", approvedBy="result.by"),
    transform("hold", shipped="false"),
]


def test_result_approved_after_a_merge_is_the_taken_branch_result(make_process):
    process = make_process(APPROVAL)
    graph = build_graph(process.definition)
    assert graph.is_merge("decide") and not graph.is_join("decide")

    big, small = start(process, {"total": 500}), start(process, {"total": 5})

    assert (big.status, big.result) == (Run.Status.COMPLETED, {"shipped": True,
                                                                "approvedBy": "rule"})
    assert (small.status, small.result) == (Run.Status.COMPLETED, {"shipped": False})
    decide = StepRun.objects.get(run=big, step_id="decide")
    assert decide.input == {"approved": True, "by": "rule"}  # not keyed by branch
    assert StepRun.objects.filter(run=big, step_id="reject").count() == 0


def test_on_error_and_success_meet_at_a_merge(make_process, calls):
    steps = [
        {"id": "pay", "type": "function", "function": "test.boom", "next": "after",
         "config": {"onError": "fallback"}},
        transform("fallback", "after", paid="false"),
        {"id": "after", "type": "condition", "condition": "result.paid == false",
         "next": "done"},
        transform("done", note="'paid later'"),
    ]
    process = make_process(steps)
    assert build_graph(process.definition).is_merge("after")
    run = start(process)
    assert (run.status, run.result) == (Run.Status.COMPLETED, {"note": "paid later"})


def test_the_and_join_after_a_parallel_fan_out_still_waits_for_both(make_process):
    steps = [
        {"id": "split", "type": "parallel", "next": ["ask", "fast"]},
        {"id": "ask", "type": "human", "next": "join",
         "config": {"approvers": ["manager@example.com"]}},
        transform("fast", "join", quick="true"),
        transform("join", both="has(result.ask) && has(result.fast)"),
    ]
    process = make_process(steps)
    assert build_graph(process.definition).is_join("join")
    run = start(process)

    assert run.status == Run.Status.WAITING
    join = StepRun.objects.get(run=run, step_id="join")
    assert join.status == StepRun.Status.WAITING  # `fast` arrived; `ask` has not
    assert StepRun.objects.get(run=run, step_id="fast").status == StepRun.Status.COMPLETED

    approval_decide(approval=ApprovalRequest.objects.get(run=run), approved=True,
                    decided_by="manager@example.com")
    run.refresh_from_db()
    assert (run.status, run.result) == (Run.Status.COMPLETED, {"both": True})
    assert StepRun.objects.filter(run=run, step_id="join").count() == 1


def test_the_graph_draws_merge_and_join():
    svg = str(render_graph({"steps": APPROVAL}))
    assert "merge" in svg and "waits for" not in svg
    fan = [{"id": "split", "type": "parallel", "next": ["a", "b"]},
           {"id": "a", "type": "function", "function": "f", "next": "j"},
           {"id": "b", "type": "function", "function": "f", "next": "j"},
           {"id": "j", "type": "function", "function": "f"}]
    svg = str(render_graph({"steps": fan}))
    assert "join · waits for 2" in svg and "ef-tag-merge" not in svg
