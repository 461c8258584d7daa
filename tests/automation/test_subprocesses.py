"""Sub-processes (docs/user-guide/sub-processes.md): a `process` step starts a child run,
waits for it without a worker, and ends with the child's result or failure; the two runs
link both ways; cancelling the parent cancels the child. Steps run in this process (the
doorbell's synchronous mode) or on the broker without a worker, so each state between
two transactions can be looked at; tests/automation/test_subprocess_worker.py runs them
on real workers."""

import pytest

from automation.engine.executor import execute_step
from automation.exceptions import DefinitionInvalidError
from automation.models import Run, StepRun
from automation.services.processes import process_save
from automation.services.runs import run_cancel, run_start
from automation.services.subprocesses import start_child
from automation.services.sweeper import subprocesses_sweep
from automation.store import get_store
from tests.factories import make_order

pytestmark = pytest.mark.django_db(transaction=True)

DOUBLE = [{"id": "double", "type": "function", "function": "transform",
           "config": {"params": {"output": {"doubled": "input.n * 2"}}}}]


def parent_steps(child: str, **config) -> list[dict]:
    return [
        {"id": "call", "type": "process",
         "config": {"process": child, "input": {"n": "input.n + 1"}, **config}, "next": "use"},
        {"id": "use", "type": "function", "function": "transform",
         "config": {"params": {"output": {"got": "steps.call.output.doubled"}}}},
    ]


def parent_run_started(make_process, *, n: int) -> Run:
    """The `double` child process, a `parent` process calling it, and a run of the parent
    started with input n (its first step not yet executed unless the mode runs it)."""
    make_process(DOUBLE, slug="double")
    parent = make_process(parent_steps("double"), slug="parent")
    run, _ = run_start(process=parent, trigger={"type": "manual"}, input={"n": n})
    return run


def test_the_parent_goes_on_with_the_childs_result(make_process):
    run = parent_run_started(make_process, n=4)
    run.refresh_from_db()
    assert (run.status, run.result) == (Run.Status.COMPLETED, {"got": 10}), run.error
    child = Run.objects.get(parent_run=run)
    call = StepRun.objects.get(run=run, step_id="call")
    assert child.parent_step_run_id == call.pk and child.input == {"n": 5}
    assert call.state["childRun"] == str(child.pk) and call.output == {"doubled": 10}
    assert child.trigger == {"type": "process", "parentExecutionId": str(run.pk),
                             "parentStep": "call", "depth": 1}


def test_the_step_waits_without_a_worker_and_the_childs_end_finishes_it(make_process,
                                                                         queued_mode):
    run = parent_run_started(make_process, n=1)
    execute_step(StepRun.objects.get(run=run, step_id="call").pk)  # a worker runs the step once
    call = StepRun.objects.get(run=run, step_id="call")
    run.refresh_from_db()
    child = Run.objects.get(parent_run=run)
    assert call.status == StepRun.Status.WAITING  # no worker holds it: the sweeper leaves it
    assert run.status == Run.Status.WAITING and child.status == Run.Status.PENDING
    execute_step(StepRun.objects.get(run=child).pk)  # the child ends: `call` with it
    call.refresh_from_db()
    assert call.status == StepRun.Status.COMPLETED and call.output == {"doubled": 4}
    execute_step(StepRun.objects.get(run=run, step_id="use").pk)
    run.refresh_from_db()
    assert (run.status, run.result) == (Run.Status.COMPLETED, {"got": 4})


def test_a_failing_child_fails_the_parent_step_and_on_error_takes_over(make_process):
    make_process([{"id": "boom", "type": "function", "function": "test.boom"}],
                 slug="charge")
    parent = make_process(parent_steps("charge"), slug="parent")
    run, _ = run_start(process=parent, trigger={"type": "manual"}, input={"n": 1})
    run.refresh_from_db()
    call = StepRun.objects.get(run=run, step_id="call")
    assert run.status == Run.Status.FAILED and call.status == StepRun.Status.FAILED
    assert call.error["code"] == "subprocess_failed"
    assert "the warehouse API said no" in call.error["message"]
    assert call.error["executionId"] == str(Run.objects.get(parent_run=run).pk)

    handled = make_process([
        {"id": "call", "type": "process",
         "config": {"process": "charge", "onError": "fallback"}},
        {"id": "fallback", "type": "function", "function": "transform",
         "config": {"params": {"output": {"code": "result.error.code"}}}}], slug="handled")
    run, _ = run_start(process=handled, trigger={"type": "manual"}, input={})
    run.refresh_from_db()
    assert (run.status, run.result) == (Run.Status.COMPLETED, {"code": "subprocess_failed"})


def test_cancelling_the_parent_cancels_the_child_and_its_children(make_process, queued_mode):
    make_process(DOUBLE, slug="leaf")
    make_process([{"id": "inner", "type": "process", "config": {"process": "leaf"}}],
                 slug="middle")
    parent = make_process([{"id": "outer", "type": "process", "config": {"process": "middle"}}],
                          slug="top")
    run, _ = run_start(process=parent, trigger={"type": "manual"}, input={"n": 1})
    execute_step(StepRun.objects.get(run=run).pk)
    middle = Run.objects.get(parent_run=run)
    execute_step(StepRun.objects.get(run=middle).pk)
    leaf = Run.objects.get(parent_run=middle)
    run_cancel(run=run)
    for each in (run, middle, leaf):
        each.refresh_from_db()
        assert each.status == Run.Status.CANCELLED, each
    assert "parent execution" in leaf.error["message"]
    assert StepRun.objects.get(run=run).status == StepRun.Status.CANCELLED
    execute_step(StepRun.objects.get(run=leaf).pk)  # a late doorbell runs nothing
    assert StepRun.objects.get(run=leaf).status == StepRun.Status.CANCELLED


def test_cancelling_the_child_fails_the_parent_step_with_a_clear_error(make_process,
                                                                       queued_mode):
    run = parent_run_started(make_process, n=1)
    execute_step(StepRun.objects.get(run=run).pk)
    child = Run.objects.get(parent_run=run)
    run_cancel(run=child)
    run.refresh_from_db()
    call = StepRun.objects.get(run=run, step_id="call")
    assert call.status == StepRun.Status.FAILED and call.error["code"] == "subprocess_cancelled"
    assert str(child.pk) in call.error["message"]
    assert run.status == Run.Status.FAILED and run.error["code"] == "subprocess_cancelled"


def test_a_child_that_ends_before_its_parent_step_is_recorded_still_finishes_it(
        make_process):
    """In the synchronous mode the child runs to its end inside the parent step's start,
    before the parent step is recorded as waiting: the record applies the end itself."""
    run = parent_run_started(make_process, n=2)
    run.refresh_from_db()
    assert run.result == {"got": 6}
    logs = [line["message"] for line in StepRun.objects.get(run=run, step_id="call").logs]
    assert any(m.startswith("started sub-process double v1") for m in logs)


def test_a_lost_worker_repeats_the_step_and_finds_the_child_it_started(make_process,
                                                                       queued_mode):
    run = parent_run_started(make_process, n=1)
    call = StepRun.objects.get(run=run, step_id="call")
    store = get_store()
    claim = store.claim(call.pk, lease_seconds=60)
    first = start_child(claim.step_run, key=f"{run.pk}:call::1", input={"n": 2}, entity=None)
    # the worker dies here: the step stays running, its lease runs out
    StepRun.objects.filter(pk=call.pk).update(lease_expires_at="2000-01-01T00:00:00Z")
    execute_step(call.pk)
    assert Run.objects.filter(parent_run=run).count() == 1
    call.refresh_from_db()
    assert call.status == StepRun.Status.WAITING and call.state["childRun"] == first["id"]


def test_versions_pinned_to_the_parents_save_or_the_latest(make_process):
    make_process(DOUBLE, slug="double")
    pinned = make_process(parent_steps("double"), slug="pinned")
    latest = make_process(parent_steps("double", version="latest"), slug="latest")
    process_save(slug="double", name="Double", definition={"steps": [
        {"id": "double", "type": "function", "function": "transform",
         "config": {"params": {"output": {"doubled": "input.n * 200"}}}}], "triggers": []})
    one, _ = run_start(process=pinned, trigger={"type": "manual"}, input={"n": 0})
    two, _ = run_start(process=latest, trigger={"type": "manual"}, input={"n": 0})
    one.refresh_from_db()
    two.refresh_from_db()
    assert one.result == {"got": 2} and Run.objects.get(parent_run=one).version.number == 1
    assert two.result == {"got": 200} and Run.objects.get(parent_run=two).version.number == 2


def test_the_child_runs_on_the_parents_entity_or_the_one_the_expression_names(
        make_process, order_type):
    entity_type = order_type
    make_process([{"id": "ref", "type": "function", "function": "transform",
                   "config": {"params": {"output": {"ref": "entity.reference"}}}}],
                 slug="which", entity_type=entity_type)
    one, other = make_order(reference="A-1"), make_order(reference="B-2")
    default = make_process([{"id": "call", "type": "process", "config": {"process": "which"}}],
                           slug="default", entity_type=entity_type)
    named = make_process([{"id": "call", "type": "process",
                           "config": {"process": "which", "entity": "input.other"}}],
                         slug="named", entity_type=entity_type)
    a, _ = run_start(process=default, trigger={"type": "manual"}, entity=one)
    b, _ = run_start(process=named, trigger={"type": "manual"}, entity=one,
                     input={"other": str(other.pk)})
    c, _ = run_start(process=named, trigger={"type": "manual"}, entity=one,
                     input={"other": "nobody"})
    for each in (a, b, c):
        each.refresh_from_db()
    assert a.result == {"ref": "A-1"} and b.result == {"ref": "B-2"}
    assert c.status == Run.Status.FAILED and c.error["code"] == "subprocess_entity"
    # the entity's why-timeline names the run that started the sub-process
    from entities.timeline import timeline

    entries, _ = timeline(one, kinds={"run"})
    child = Run.objects.get(parent_run=a)
    [entry] = [e for e in entries if e.details["runId"] == str(child.pk)]
    assert entry.details["parentRunId"] == str(a.pk)
    assert entry.summary == (f"Started which (sub-process of run {str(a.pk)[:8]}, step call); "
                             "now completed")


def test_saving_refuses_an_unknown_process_and_a_process_calling_itself(make_process):
    with pytest.raises(DefinitionInvalidError) as unknown:
        make_process(parent_steps("nowhere"), slug="parent")
    assert unknown.value.fields == {"steps[0].config.process": ["Unknown process 'nowhere'."]}
    make_process(DOUBLE, slug="selfish")
    with pytest.raises(DefinitionInvalidError) as itself:
        make_process(parent_steps("selfish"), slug="selfish")
    assert "cannot run itself" in itself.value.fields["steps[0].config.process"][0]
    with pytest.raises(DefinitionInvalidError) as bad:
        make_process([{"id": "call", "type": "process",
                       "config": {"process": "selfish", "version": "newest", "entity": "1 +"}}])
    assert set(bad.value.fields) == {"steps[0].config.version", "steps[0].config.entity"}


def test_an_indirect_cycle_stops_at_the_depth_limit(make_process):
    make_process(DOUBLE, slug="ping")
    make_process([{"id": "call", "type": "process", "config": {"process": "ping"}}],
                 slug="pong")
    # ping now calls pong, which calls ping: not refused when saved, stopped at run time
    ping = make_process([{"id": "call", "type": "process",
                          "config": {"process": "pong", "version": "latest"}}], slug="ping")
    make_process([{"id": "call", "type": "process",
                   "config": {"process": "ping", "version": "latest"}}], slug="pong")
    run, _ = run_start(process=ping, trigger={"type": "manual"}, input={})
    run.refresh_from_db()
    chain = [run]
    while (child := Run.objects.filter(parent_run=chain[-1]).first()) is not None:
        chain.append(child)
    assert len(chain) == 11  # the top run and 10 levels below it
    deepest = chain[-1]
    assert deepest.error["code"] == "subprocess_too_deep"
    assert "deeper than 10 levels" in deepest.error["message"]
    assert all(r.status == Run.Status.FAILED for r in chain)
    assert run.error["code"] == "subprocess_failed"  # each parent fails with its child


def test_the_sweeper_cancels_a_child_its_parents_cancel_left_behind(make_process, queued_mode):
    make_process(DOUBLE, slug="double")
    parent = make_process(parent_steps("double"), slug="parent")
    run, _ = run_start(process=parent, trigger={"type": "manual"}, input={"n": 1})
    execute_step(StepRun.objects.get(run=run).pk)
    child = Run.objects.get(parent_run=run)
    # the parent's cancel committed, then its worker died before cancelling the child
    Run.objects.filter(pk=run.pk).update(status=Run.Status.CANCELLED)
    StepRun.objects.filter(run=run).update(status=StepRun.Status.CANCELLED)
    assert subprocesses_sweep() == 1
    child.refresh_from_db()
    assert child.status == Run.Status.CANCELLED
    assert subprocesses_sweep() == 0


def test_the_run_pages_link_parent_and_child_both_ways(make_process, admin_client):
    from django.urls import reverse

    run = parent_run_started(make_process, n=1)
    child = Run.objects.get(parent_run=run)
    parent_page = admin_client.get(reverse("admin:automation_run_change", args=[run.pk]))
    child_page = admin_client.get(reverse("admin:automation_run_change", args=[child.pk]))
    child_url = reverse("admin:automation_run_change", args=[child.pk])
    parent_url = reverse("admin:automation_run_change", args=[run.pk])
    html = parent_page.content.decode()
    assert 'id="ef-subprocesses"' in html and html.count(f'href="{child_url}"') == 2  # banner, step
    assert "of double (step “call”)" in html
    html = child_page.content.decode()
    assert f'href="{parent_url}"' in html and "this run is a sub-process of" in html


def test_the_sweeper_finishes_a_parent_step_left_waiting_on_an_ended_child(make_process,
                                                                           queued_mode):
    from automation.tasks import sweep_all

    run = parent_run_started(make_process, n=1)
    execute_step(StepRun.objects.get(run=run).pk)
    child = Run.objects.get(parent_run=run)
    # a child ended by a path that skipped the run-end hooks (written here by hand)
    Run.objects.filter(pk=child.pk).update(status=Run.Status.COMPLETED, result={"doubled": 7})
    assert sweep_all()["subprocesses"] == 1
    call = StepRun.objects.get(run=run, step_id="call")
    assert call.status == StepRun.Status.COMPLETED and call.output == {"doubled": 7}
    assert StepRun.objects.get(run=run, step_id="use").status == StepRun.Status.PENDING
    assert subprocesses_sweep() == 0


def test_a_retried_step_starts_a_new_child_and_only_that_one_finishes_it(make_process,
                                                                         queued_mode):
    make_process([{"id": "try", "type": "function", "function": "test.flaky",
                   "config": {"params": {"failures": 1, "key": "shared"}}}], slug="flaky")
    parent = make_process([{"id": "call", "type": "process",
                            "config": {"process": "flaky", "retries": 1}}], slug="parent")
    run, _ = run_start(process=parent, trigger={"type": "manual"}, input={})
    call = StepRun.objects.get(run=run, step_id="call")
    execute_step(call.pk)
    first = Run.objects.get(parent_run=run)
    execute_step(StepRun.objects.get(run=first).pk)  # the first child fails: call retries
    first.refresh_from_db()
    call.refresh_from_db()
    assert first.status == Run.Status.FAILED and call.status == StepRun.Status.PENDING
    StepRun.objects.filter(pk=call.pk).update(not_before=None)  # the retry is due
    execute_step(call.pk)
    second = Run.objects.filter(parent_run=run).exclude(pk=first.pk).get()
    call.refresh_from_db()
    assert call.status == StepRun.Status.WAITING and call.state["childRun"] == str(second.pk)
    assert subprocesses_sweep() == 0  # the first child's end is not this attempt's
    from automation.store import recording
    assert recording.resume_parent(first) is False
    call.refresh_from_db()
    assert call.status == StepRun.Status.WAITING
    execute_step(StepRun.objects.get(run=second).pk)
    run.refresh_from_db()
    assert (run.status, run.result) == (Run.Status.COMPLETED, {"calls": 2}), run.error
