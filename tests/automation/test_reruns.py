"""Re-run from any step with edited input, retry (pinned or latest version), and the
idempotency ledger, against the fake HubSpot on 127.0.0.1 (docs/user-guide/operating-runs.md)."""

import pytest

from automation.api.services import function_save
from automation.connections.services import connection_create
from automation.exceptions import RunStateError
from automation.functions import function
from automation.functions.registry import get_action
from automation.models import Effect, Run, StepRun
from automation.services.processes import process_save
from automation.services.reruns import RerunInvalidError, rerun_plan, run_rerun
from automation.services.runs import run_retry, run_start
from automation.store import get_store
from entities.services import entity_create

pytestmark = pytest.mark.django_db(transaction=True)


@function("test.mail-then-fail")
def mail_then_fail(ctx):
    sent = get_action("email.send").handler(ctx)
    if not ctx.effect_origin:  # the first run fails after the mail went out
        raise RuntimeError("the CRM did not confirm")
    return sent

DEALS = "/crm/v3/objects/deals"


def f(sid, nxt=None, function="test.record", **config):
    step = {"id": sid, "type": "function", "function": function}
    if nxt:
        step["next"] = nxt
    if config:
        step["config"] = config
    return step


@pytest.fixture
def five_steps(order_type, hubspot_fake):
    """step 1 writes a deal to HubSpot, step 3 fails once (then succeeds), 5 steps in all."""
    connection = connection_create(provider="hubspot", name="hubspot-fake",
                                   base_url=hubspot_fake.url,
                                   credentials={"accessToken": hubspot_fake.token})
    function_save(name="deal", action="hubspot.upsert_deal", connection=connection,
                  config={"dealname": "Order {{ entity.reference }}",
                          "properties": {"amount": "{{ entity.data.total }}",
                                         "dealstage": "appointmentscheduled",
                                         "pipeline": "default"}})
    steps = [f("s1", "s2", function="deal"), f("s2", "s3"),
             f("s3", "s4", function="test.flaky", params={"failures": 1, "key": "s3"}),
             f("s4", "s5"), f("s5")]
    return process_save(slug="five", name="Five steps", entity_type=order_type,
                        definition={"steps": steps, "triggers": []})


def writes(fake) -> int:
    """Deals created or updated (searches left out)."""
    return fake.count(DEALS) - fake.count(f"{DEALS}/search")


def failed_run(process, order_type) -> Run:
    order = entity_create(entity_type=order_type, reference="ORD-7",
                          data={"customer": {"name": "Ada"}, "total": 3})
    run, _ = run_start(process=process, trigger={"type": "manual"}, entity=order,
                       input={"note": "first"})
    run.refresh_from_db()
    assert run.status == Run.Status.FAILED and run.error["step"] == "s3"
    return run


def test_rerun_from_step_two_with_edited_input_does_not_repeat_the_hubspot_write(
        five_steps, order_type, hubspot_fake, calls):
    run = failed_run(five_steps, order_type)
    assert writes(hubspot_fake) == 1

    plan = rerun_plan(run=run, from_step="s2", input={"edited": True})
    assert plan.runs == ["s2", "s3", "s4", "s5"] and plan.kept == ["s1"]
    assert [e["action"] for e in plan.effects] == ["hubspot.upsert_deal"]
    assert plan.effects[0]["fate"] == "kept"

    new = run_rerun(run=run, from_step="s2", input={"edited": True})
    new.refresh_from_db()
    assert new.status == Run.Status.COMPLETED, new.error
    assert new.rerun_of == run and list(run.reruns.all()) == [new]
    steps = {s.step_id: s for s in new.steps.all()}
    assert all(steps[s].status == "completed" for s in ("s1", "s2", "s3", "s4", "s5"))
    assert steps["s2"].input == {"edited": True}
    assert any("kept from run" in line["message"] for line in steps["s1"].logs)
    assert [c for c in calls if c[0] == "s2"][-1] == ("s2", {"edited": True})
    assert writes(hubspot_fake) == 1  # step 1's write was not repeated
    run.refresh_from_db()
    assert run.status == Run.Status.FAILED  # the old attempt stays as it was


def test_repeat_effects_repeats_the_write_once(five_steps, order_type, hubspot_fake):
    run = failed_run(five_steps, order_type)
    served = run_rerun(run=run, from_step="s1")  # from step 1: the ledger serves the write
    served.refresh_from_db()
    assert served.status == Run.Status.COMPLETED, served.error
    assert writes(hubspot_fake) == 1
    s1 = served.steps.get(step_id="s1")
    assert any(line.get("data", {}).get("ledger") == "served" for line in s1.logs)
    assert s1.output == run.steps.get(step_id="s1").output

    repeated = run_rerun(run=served, from_step="s1", repeat_effects=True)
    repeated.refresh_from_db()
    assert repeated.status == Run.Status.COMPLETED, repeated.error
    assert writes(hubspot_fake) == 2  # once more
    assert Effect.objects.get().calls == 2
    assert repeated.trigger["origin"] == str(run.pk)  # one chain, one ledger key


def test_retry_pinned_and_latest(make_process, calls):
    steps = [f("a", "b"), f("b", "c", function="test.boom"), f("c")]
    process = make_process(steps)
    run, _ = run_start(process=process, trigger={"type": "manual"})
    run.refresh_from_db()
    assert run.status == Run.Status.FAILED

    pinned = run_retry(run=run)
    pinned.refresh_from_db()
    assert pinned.status == Run.Status.FAILED and pinned.version_id == run.version_id
    assert pinned.trigger["type"] == "retry" and pinned.rerun_of == run

    fixed = make_process([f("a", "b"), f("b", "c"), f("c")], slug=process.slug)
    latest = run_retry(run=pinned, version="latest")
    latest.refresh_from_db()
    assert latest.version_id == fixed.current_version_id != run.version_id
    assert latest.status == Run.Status.COMPLETED, latest.error
    assert [c[0] for c in calls] == ["a", "b", "b", "b", "c"]  # "a" never ran again


def test_bad_reruns_are_refused_and_write_nothing(make_process):
    process = make_process([f("a", "b"), f("b")])
    run, _ = run_start(process=process, trigger={"type": "manual"})
    run.refresh_from_db()
    before = Run.objects.count()
    with pytest.raises(RerunInvalidError) as err:
        run_rerun(run=run, from_step="nope")
    assert "fromStep" in err.value.fields
    with pytest.raises(RerunInvalidError) as err:
        run_rerun(run=run, from_step="a", version="newest")
    assert "version" in err.value.fields
    with pytest.raises(RunStateError):
        run_retry(run=run)  # completed: nothing to retry
    assert Run.objects.count() == before


def test_an_unfinished_run_cannot_be_rerun(make_process):
    process = make_process([{"id": "ask", "type": "human", "config": {"approvers": ["x"]}}])
    run, _ = run_start(process=process, trigger={"type": "manual"})
    run.refresh_from_db()
    assert run.status == Run.Status.WAITING
    with pytest.raises(RunStateError):
        rerun_plan(run=run, from_step="ask")


def test_prune_removes_the_ledger_with_its_last_run(five_steps, order_type):
    from django.utils import timezone

    run = failed_run(five_steps, order_type)
    assert Effect.objects.filter(run=run).count() == 1
    later = timezone.now() + timezone.timedelta(days=1)
    while not get_store().prune_finished(later, chunk=100).done:
        pass
    assert not Effect.objects.exists() and not StepRun.objects.exists()


def test_retry_starts_again_the_branches_the_failure_stopped(make_process, calls):
    from automation.models import ApprovalRequest
    from automation.services.approvals import approval_decide

    steps = [{"id": "split", "type": "parallel", "next": ["ask", "pay"]},
             {"id": "ask", "type": "human", "next": "end",
              "config": {"approvers": ["boss@example.com"]}},
             f("pay", "end", function="test.flaky", params={"failures": 1}),
             f("end")]
    run, _ = run_start(process=make_process(steps), trigger={"type": "manual"})
    run.refresh_from_db()
    assert run.status == Run.Status.FAILED
    assert run.steps.get(step_id="ask").status == StepRun.Status.CANCELLED  # stopped by it

    retried = run_retry(run=run)
    retried.refresh_from_db()
    assert retried.status == Run.Status.WAITING  # pay done, ask waits again, end joins both
    assert retried.steps.get(step_id="pay").status == StepRun.Status.COMPLETED
    approval = ApprovalRequest.objects.get(run=retried)
    approval_decide(approval=approval, approved=True, decided_by="boss@example.com")
    retried.refresh_from_db()
    assert retried.status == Run.Status.COMPLETED, retried.error


def test_a_mail_is_sent_once_across_a_retry_from_its_own_step(make_process, mailoutbox):
    """The step mails, then its response check fails: the retry of that very step is
    served the mail from the ledger instead of sending it again."""
    process = make_process([f("mail", function="test.mail-then-fail",
                              params={"to": "ada@example.com", "subject": "Hello"})])
    run, _ = run_start(process=process, trigger={"type": "manual"})
    run.refresh_from_db()
    assert run.status == Run.Status.FAILED and len(mailoutbox) == 1
    retried = run_retry(run=run)
    retried.refresh_from_db()
    assert retried.status == Run.Status.COMPLETED, retried.error
    assert len(mailoutbox) == 1  # served from the ledger
    assert retried.result["to"] == ["ada@example.com"]
    assert Effect.objects.get().served == 1


def test_which_actions_are_external_effects():
    from integrations.registry import all_connectors

    effects = {f"{slug}.{name}" for slug, cls in all_connectors().items()
               for name, spec in cls.actions.items() if spec.effect}
    assert effects == {
        "hubspot.upsert_contact", "hubspot.upsert_company", "hubspot.upsert_deal",
        "hubspot.associate", "hubspot.add_note", "dropbox.create_folder",
        "dropbox.upload_file", "dropbox.create_shared_link", "http.request", "webhook.post",
        "sql.execute"}
    http = all_connectors()["http"].actions["request"]
    assert http.makes_effect({"method": "post"}) and not http.makes_effect({"method": "GET"})
    assert not http.makes_effect({}) and not http.makes_effect({"method": "OPTIONS"})


def test_rerun_of_one_parallel_branch_keeps_what_the_other_brought_to_the_join(make_process):
    steps = [{"id": "split", "type": "parallel", "next": ["left", "right"]},
             f("left", "end", function="test.record", params={"side": "L"}),
             f("right", "end", function="test.record", params={"side": "R"}),
             f("end")]
    run, _ = run_start(process=make_process(steps), trigger={"type": "manual"})
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED
    new = run_rerun(run=run, from_step="right", input={"again": True})
    new.refresh_from_db()
    assert new.status == Run.Status.COMPLETED, new.error
    end = new.steps.get(step_id="end")
    assert set(end.input) == {"left", "right"} and end.input["right"]["seen"] == {"again": True}
    assert end.input["left"] == run.steps.get(step_id="end").input["left"]


def test_rerun_after_a_merge_of_exclusive_branches(make_process):
    steps = [{"id": "check", "type": "condition", "condition": "input.n > 1", "next": "big",
              "config": {"else": "small"}},
             f("big", "ship"), f("small", "ship"),
             f("ship", function="test.flaky", params={"failures": 1})]
    run, _ = run_start(process=make_process(steps), trigger={"type": "manual"}, input={"n": 5})
    run.refresh_from_db()
    assert run.status == Run.Status.FAILED
    retried = run_retry(run=run)
    retried.refresh_from_db()
    assert retried.status == Run.Status.COMPLETED, retried.error
