"""Agent steps as a tool-calling loop, end to end against the fake OpenAI-compatible
server and a fake tool backend (both real HTTP on 127.0.0.1): the workflows users post,
parallel, malformed and failing tool calls, answers that do not fit the output schema,
limits, and definition-time validation (docs/user-guide/agents.md)."""

import json

import pytest
from django.test import Client

from automation.api.services import function_save
from automation.connections.services import connection_create
from automation.models import ApprovalRequest, Run, StepRun
from automation.services.agents import agent_save
from automation.services.approvals import approval_decide
from automation.services.runs import run_start
from tests.integrations.fakes.openai import FakeOpenAI
from tests.integrations.fakes.tools import ToolServer

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "sk-test-agents-0123456789abcdef"
TOOL_SECRET = "whsec-tools-0123456789"
REVIEW_SCHEMA = {"type": "object", "required": ["requiresHumanReview", "summary"],
                 "properties": {"requiresHumanReview": {"type": "boolean"},
                                "summary": {"type": "string"}}}
TEXT_ARGS = {"type": "object", "required": ["text"], "additionalProperties": False,
             "properties": {"text": {"type": "string"}}}


@pytest.fixture
def model():
    fake = FakeOpenAI(api_key=KEY).start()
    yield fake
    fake.stop()


@pytest.fixture
def tools():
    fake = ToolServer({"sentiment-analysis": {"sentiment": "negative", "score": -0.8},
                       "compliance-check": {"compliant": False, "issues": ["medical claim"]},
                       "lookup-customer": {"plan": "enterprise", "sla": "1h"},
                       "page-oncall": {"paged": True}}).start()
    yield fake
    fake.stop()


def tool(tools, name, schema=TEXT_ARGS):
    return function_save(name=name, action="webhook.post", params_schema=schema,
                         config={"url": tools.tool_url(name), "secret": TOOL_SECRET,
                                 "payload": "{{ result }}"})


@pytest.fixture
def setup(db, model, tools):
    connection_create(provider="openai", name="llm", base_url=model.base_url,
                      credentials={"apiKey": KEY}, options={"model": "gpt-test"})
    for name in ("sentiment-analysis", "compliance-check", "publish-content"):
        tool(tools, name, None if name == "publish-content" else TEXT_ARGS)
    tool(tools, "lookup-customer", {"type": "object", "required": ["email"],
                                    "properties": {"email": {"type": "string"}}})
    tool(tools, "page-oncall", {"type": "object", "properties": {"team": {"type": "string"}}})
    agent_save(key="content-reviewer", instructions="Review the article. Answer in JSON.",
               tools=["sentiment-analysis", "compliance-check"], output_schema=REVIEW_SCHEMA,
               input_price=2, output_price=8)
    return model, tools


def content_review(make_process):
    return make_process([
        {"id": "review", "type": "agent", "next": "needs-review",
         "config": {"agentRole": "content-reviewer",
                    "tools": ["sentiment-analysis", "compliance-check"]}},
        {"id": "needs-review", "type": "condition",
         "condition": "result.requiresHumanReview === true", "next": "human-review",
         "config": {"else": "publish"}},
        {"id": "human-review", "type": "human", "next": "publish",
         "config": {"approvers": ["editor"],
                    "form": {"type": "object", "properties": {"reason": {"type": "string"}}}}},
        {"id": "publish", "type": "function", "function": "publish-content"},
    ], slug="content-review")


def review_with_tools(setup, make_process) -> Run:
    """The content review: parallel tool calls, a person approves, the article is published."""
    model, tools = setup
    model.call_tools(("call_s", "sentiment-analysis", {"text": "Cures everything!"}),
                     ("call_c", "compliance-check", {"text": "Cures everything!"}))
    model.reply({"requiresHumanReview": True, "summary": "medical claim"})
    run, _ = run_start(process=content_review(make_process), trigger={"type": "manual"},
                       input={"article": "Cures everything!"})
    run.refresh_from_db()
    assert run.status == Run.Status.WAITING, run.error
    review = StepRun.objects.get(run=run, step_id="review")
    assert review.output == {"requiresHumanReview": True, "summary": "medical claim"}
    # each tool call is a child step run of the agent step, with its own record
    children = {c.step_id: c for c in review.children.all()}
    assert set(children) == {"review/call_s", "review/call_c"}
    assert all(c.status == "completed" and c.attempt == 1 for c in children.values())
    assert json.loads(children["review/call_s"].output["responseBody"])["sentiment"] == "negative"
    assert tools.effect_count("sentiment-analysis") == tools.effect_count("compliance-check") == 1
    # the tools' params schemas were the tools' schemas; their results went back
    first, second = model.completions()
    assert first["messages"][0] == {"role": "system",
                                    "content": "Review the article. Answer in JSON."}
    assert json.loads(first["messages"][1]["content"]) == {"article": "Cures everything!"}
    assert {t["function"]["name"]: t["function"]["parameters"] for t in first["tools"]} == {
        "sentiment-analysis": TEXT_ARGS, "compliance-check": TEXT_ARGS}
    assert first["response_format"]["type"] == "json_schema"
    assert first["response_format"]["json_schema"]["schema"] == REVIEW_SCHEMA
    assert [m["role"] for m in second["messages"]] == ["system", "user", "assistant", "tool",
                                                       "tool"]
    sent_back = json.loads(second["messages"][3]["content"])
    assert json.loads(sent_back["responseBody"])["tool"] == "sentiment-analysis"
    # token usage and cost: two turns of the fake's 31 + 14 tokens at 2 and 8 per million
    agent_state = review.state["agent"]
    assert agent_state["usage"] == {"promptTokens": 62, "completionTokens": 28,
                                    "totalTokens": 90}
    assert agent_state["cost"] == "0.000348"
    assert agent_state["iterations"] == 2 and agent_state["toolCalls"] == 2

    approval = ApprovalRequest.objects.get(run=run)
    assert approval.form["properties"] == {"reason": {"type": "string"}}  # the step's form
    approval_decide(approval=approval, approved=True, decided_by="editor",
                    data={"reason": "claims checked with legal"})
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED, run.error
    decided = StepRun.objects.get(run=run, step_id="human-review").output
    assert decided["approved"] is True and decided["decidedBy"] == "editor"
    assert decided["data"] == {"reason": "claims checked with legal"}
    assert tools.effect_count("publish-content") == 1
    return run


def test_run_history_shows_tool_calls_nested_with_usage_and_cost(setup, make_process,
                                                                   staff_client):
    run = review_with_tools(setup, make_process)
    page = staff_client.get(f"/admin/automation/run/{run.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "review/call_s" in html and "tool call of review" in html
    assert "90 tokens · cost 0.000348" in html and "62 prompt, 28 completion" in html
    steps = staff_client.get(f"/api/executions/{run.pk}?expand=steps").json()["steps"]
    by_id = {s["id"]: s for s in steps}
    assert by_id["review/call_c"]["parent"] == "review"
    assert by_id["review"]["usage"] == {"promptTokens": 62, "completionTokens": 28,
                                        "totalTokens": 90, "cost": "0.000348"}
    assert by_id["publish"]["usage"] is None and by_id["publish"]["parent"] is None


def test_content_review_runs_tools_in_parallel_then_waits_for_a_person(setup, make_process):
    assert review_with_tools(setup, make_process).status == Run.Status.COMPLETED


def test_content_review_without_review_goes_straight_to_publish(setup, make_process):
    model, tools = setup
    model.reply({"requiresHumanReview": False, "summary": "fine"})
    run, _ = run_start(process=content_review(make_process), trigger={"type": "manual"},
                       input={"article": "A walk in the park."})
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED, run.error
    assert not ApprovalRequest.objects.filter(run=run).exists()
    assert tools.effect_count("publish-content") == 1


def test_support_ticket_triage_then_a_second_agent_with_tools(setup, make_process):
    model, tools = setup
    agent_save(key="ticket-triage", instructions="Classify the ticket as JSON.",
               output_schema={"type": "object", "required": ["urgency"], "properties": {
                   "urgency": {"enum": ["low", "normal", "critical"]}}})
    agent_save(key="incident-responder", instructions="Handle the critical ticket; JSON.",
               tools=["lookup-customer", "page-oncall"])
    process = make_process([
        {"id": "triage", "type": "agent", "next": "is-critical",
         "config": {"agentRole": "ticket-triage"}},
        {"id": "is-critical", "type": "condition", "condition": 'result.urgency === "critical"',
         "next": "respond"},
        {"id": "respond", "type": "agent",
         "config": {"agentRole": "incident-responder", "tools": ["lookup-customer",
                                                                "page-oncall"]}},
    ], slug="support-ticket")
    model.reply({"urgency": "critical"})
    model.call_tools(("c1", "lookup-customer", {"email": "ada@example.com"}))
    model.call_tools(("c2", "page-oncall", {"team": "payments"}))
    model.reply({"action": "paged", "team": "payments"})
    run, _ = run_start(process=process, trigger={"type": "manual"},
                       input={"subject": "Payments down", "from": "ada@example.com"})
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED, run.error
    assert run.result == {"action": "paged", "team": "payments"}
    assert StepRun.objects.get(run=run, step_id="triage").output == {"urgency": "critical"}
    assert tools.effect_count("lookup-customer") == tools.effect_count("page-oncall") == 1
    assert len(model.completions()) == 4


def test_malformed_and_unknown_tool_calls_are_answered_with_an_error(setup, make_process):
    model, tools = setup
    model.call_tools(("bad", "sentiment-analysis", "{not json"),
                     ("ghost", "delete-everything", {}),
                     ("wrong", "compliance-check", {"txt": "x"}))
    model.reply({"requiresHumanReview": False, "summary": "gave up on tools"})
    run, _ = run_start(process=content_review(make_process), trigger={"type": "manual"})
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED, run.error
    tool_messages = [m for m in model.completions()[1]["messages"] if m["role"] == "tool"]
    errors = {m["tool_call_id"]: json.loads(m["content"])["error"] for m in tool_messages}
    assert "not valid JSON" in errors["bad"]
    assert "There is no tool 'delete-everything'" in errors["ghost"]
    assert "Additional properties are not allowed" in errors["wrong"] or "'text'" in errors[
        "wrong"]
    assert tools.requests_to("sentiment-analysis") == tools.requests_to("compliance-check") == 0


def test_a_failing_tool_is_retried_then_its_error_goes_to_the_model(setup, make_process):
    model, tools = setup
    tools.fail("sentiment-analysis", times=5)
    model.call_tools(("s", "sentiment-analysis", {"text": "hi"}))
    model.reply({"requiresHumanReview": True, "summary": "sentiment tool down"})
    run, _ = run_start(process=content_review(make_process), trigger={"type": "manual"})
    run.refresh_from_db()
    child = StepRun.objects.get(run=run, step_id="review/s")
    assert child.status == "failed" and child.attempt == 3
    assert "500" in child.error["message"]
    assert tools.requests_to("sentiment-analysis") == 3
    content = json.loads(model.completions()[1]["messages"][-1]["content"])
    assert "500" in content["error"]
    assert run.status == Run.Status.WAITING  # the model decided: a person looks at it


def test_an_answer_that_does_not_fit_the_schema_is_sent_back_once_corrected(setup,
                                                                             make_process):
    model, _ = setup
    model.reply({"requiresHumanReview": "maybe"})
    model.reply({"requiresHumanReview": False, "summary": "ok"})
    run, _ = run_start(process=content_review(make_process), trigger={"type": "manual"})
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED, run.error
    correction = model.completions()[1]["messages"][-1]
    assert correction["role"] == "user" and "does not fit" in correction["content"]


def test_the_iteration_limit_fails_the_step_naming_it(setup, make_process):
    model, _ = setup
    for _ in range(3):
        model.reply({"requiresHumanReview": "still no"})
    process = make_process([{"id": "review", "type": "agent",
                             "config": {"agentRole": "content-reviewer", "maxIterations": 2,
                                        "retries": 2}}])
    run, _ = run_start(process=process, trigger={"type": "manual"})
    run.refresh_from_db()
    assert run.status == Run.Status.FAILED
    assert run.error["code"] == "agent_limit"
    assert "maxIterations (2" in run.error["message"]
    assert len(model.completions()) == 2
    # what the turns cost is kept on the failed step
    review = StepRun.objects.get(run=run, step_id="review")
    assert review.attempt == 1  # a limit is not retried: it would be hit again
    assert review.state["agent"]["usage"]["totalTokens"] == 90


def test_the_tool_call_limit_and_on_error(setup, make_process):
    model, tools = setup
    model.call_tools(("a", "sentiment-analysis", {"text": "x"}),
                     ("b", "sentiment-analysis", {"text": "y"}))
    process = make_process([
        {"id": "review", "type": "agent",
         "config": {"agentRole": "content-reviewer", "maxToolCalls": 1, "onError": "fallback"}},
        {"id": "fallback", "type": "function", "function": "publish-content"}])
    run, _ = run_start(process=process, trigger={"type": "manual"})
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED, run.error
    review = StepRun.objects.get(run=run, step_id="review")
    assert review.status == "failed" and "maxToolCalls (1)" in review.error["message"]
    assert tools.requests_to("sentiment-analysis") == 0
    assert tools.effect_count("publish-content") == 1


def test_a_retryable_model_error_uses_config_retries(setup, make_process, settings):
    model, _ = setup
    model.script(500, {"error": {"message": "overloaded", "type": "server_error"}}, times=3)
    model.reply({"requiresHumanReview": False, "summary": "ok"})
    ok = make_process([{"id": "review", "type": "agent",
                        "config": {"agentRole": "content-reviewer", "retries": 3}}])
    run, _ = run_start(process=ok, trigger={"type": "manual"})
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED, run.error
    assert StepRun.objects.get(run=run).attempt == 4


# -- definition-time validation ------------------------------------------------------------

@pytest.fixture
def staff_client(django_user_model):
    client = Client()
    client.force_login(django_user_model.objects.create_user(
        "staff", password="x", is_staff=True, is_superuser=True))
    return client


def post_definition(client, steps):
    return client.post("/api/workflow-definitions", {"id": "agents-check", "name": "Check",
                                                     "steps": steps},
                       content_type="application/json")


def test_unknown_agent_unknown_tool_and_bad_limits_are_422_naming_the_field(setup,
                                                                            staff_client):
    response = post_definition(staff_client, [
        {"id": "a", "type": "agent", "config": {"agentRole": "nobody"}},
        {"id": "b", "type": "agent", "config": {
            "agentRole": "content-reviewer", "tools": ["sentiment-analysis", "no-such-tool"],
            "maxIterations": 0, "maxToolCalls": "many", "retries": -1}}])
    assert response.status_code == 422, response.content
    fields = response.json()["error"]["fields"]
    assert fields["steps[0].config.agentRole"] == ["Unknown agent 'nobody'."]
    assert fields["steps[1].config.tools[1]"] == ["Unknown function 'no-such-tool'."]
    for name in ("maxIterations", "maxToolCalls", "retries"):
        assert f"steps[1].config.{name}" in fields
    assert not Run.objects.exists()


# -- the admin -----------------------------------------------------------------------------

def test_admin_lists_and_edits_agents_with_field_errors(setup, staff_client):
    listing = staff_client.get("/admin/automation/agent/")
    assert listing.status_code == 200 and "content-reviewer" in listing.content.decode()
    from automation.models import Agent

    agent = Agent.objects.get(key="content-reviewer")
    page = f"/admin/automation/agent/{agent.pk}/change/"
    assert staff_client.get(page).status_code == 200
    form = {"instructions": "Review it; JSON.", "connection": "", "model": "gpt-test",
            "tools": json.dumps(["sentiment-analysis", "ghost"]),
            "output_schema": json.dumps(REVIEW_SCHEMA), "max_iterations": 5,
            "max_tool_calls": 10, "max_tokens": "", "timeout_seconds": "",
            "input_price": "0", "output_price": "0", "description": ""}
    bad = staff_client.post(page, form)
    assert bad.status_code == 200 and "Unknown function &#x27;ghost&#x27;" in bad.content.decode()
    agent.refresh_from_db()
    assert agent.version == 1 and agent.tools == ["sentiment-analysis", "compliance-check"]
    good = staff_client.post(page, {**form, "tools": json.dumps(["sentiment-analysis"])})
    assert good.status_code == 302, good.content.decode()[:2000]
    agent.refresh_from_db()
    assert agent.version == 2 and agent.tools == ["sentiment-analysis"]
    assert agent.instructions == "Review it; JSON."


def test_retention_deletes_an_agent_run_with_its_tool_calls(setup, make_process):
    from datetime import timedelta

    from django.utils import timezone

    from automation.store import get_store

    model, _ = setup
    model.call_tools(("s", "sentiment-analysis", {"text": "x"}))
    model.reply({"requiresHumanReview": False, "summary": "ok"})
    run, _ = run_start(process=content_review(make_process), trigger={"type": "manual"})
    assert StepRun.objects.filter(run=run, parent__isnull=False).count() == 1
    pruned = get_store().prune_finished(timezone.now() + timedelta(days=1), chunk=10)
    assert pruned.runs == 1
    assert not StepRun.objects.filter(run_id=run.pk).exists()


def test_a_retry_is_a_new_attempt_that_carries_on_from_the_recorded_turns(setup, make_process):
    """A retry is a re-run from the failed step (docs/user-guide/operating-runs.md), a new
    attempt whose agent step carries on from the turns the failed one recorded."""
    from automation.services.runs import run_retry

    model, tools = setup
    tools.fail("compliance-check", times=3)  # its child fails for good
    model.call_tools(("s", "sentiment-analysis", {"text": "x"}),
                     ("c", "compliance-check", {"text": "x"}))
    model.script(400, {"error": {"message": "bad request", "type": "invalid_request_error"}})
    process = make_process([{"id": "review", "type": "agent",
                             "config": {"agentRole": "content-reviewer"}}])
    run, _ = run_start(process=process, trigger={"type": "manual"})
    run.refresh_from_db()
    assert run.status == Run.Status.FAILED and "400" in run.error["message"]
    model.reply({"requiresHumanReview": False, "summary": "ok"})
    retry = run_retry(run=run)
    retry.refresh_from_db()
    assert retry.status == Run.Status.COMPLETED, retry.error
    assert retry.rerun_of_id == run.pk and retry.result == {
        "requiresHumanReview": False, "summary": "ok"}
    assert len(model.completions()) == 3  # turn 1, the 400, the final answer: none again
    assert tools.requests_to("sentiment-analysis") == 1
    assert tools.requests_to("compliance-check") == 3
    old = StepRun.objects.get(run=run, step_id="review", parent__isnull=True)
    assert old.status == StepRun.Status.FAILED
    assert StepRun.objects.get(run=retry, step_id="review").state["agent"]["iterations"] == 2


def test_a_tool_call_over_its_rate_limit_puts_the_agent_step_off_and_carries_on(
        setup, make_process, hubspot_fake):
    """The tool's connection allows one request per 4 s: the second call of the turn finds
    no free request within the short wait (2 s), so the agent step is put off, not failed,
    and nothing is sent to the model about it. When due, it carries on from its saved
    transcript: the first tool is not called again, nor the model's first turn."""
    model, tools = setup
    limited = connection_create(provider="hubspot", name="hubspot-limited",
                                base_url=hubspot_fake.url,
                                credentials={"accessToken": hubspot_fake.token},
                                options={"rateLimit": {"requests": 1, "perSeconds": 4}})
    function_save(name="note-in-hubspot", action="hubspot.add_note", connection=limited,
                  params_schema=TEXT_ARGS, config={"body": "{{ result.text }}"})
    model.call_tools(("one", "note-in-hubspot", {"text": "a"}),
                     ("two", "note-in-hubspot", {"text": "b"}))
    model.reply({"requiresHumanReview": False, "summary": "both noted"})
    process = make_process([{"id": "review", "type": "agent",
                             "config": {"agentRole": "content-reviewer",
                                        "tools": ["note-in-hubspot"]}}])
    # synchronous mode: the put-off step is claimed again in this call once it is due
    run, _ = run_start(process=process, trigger={"type": "manual"})
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED, run.error
    review = StepRun.objects.get(run=run, step_id="review", parent__isnull=True)
    assert review.attempt == 1  # putting it off was not an attempt
    assert any(line.get("event") == "rate_limited" and "hubspot-limited" in line["message"]
               for line in review.logs), review.logs
    children = {c.step_id: c for c in review.children.all()}
    assert {k: (c.status, c.attempt) for k, c in children.items()} == {
        "review/one": ("completed", 1), "review/two": ("completed", 1)}
    assert hubspot_fake.count("/crm/v3/objects/notes", method="POST") == 2  # each sent once
    completions = model.completions()
    assert len(completions) == 2  # the first turn was not asked again
    answers = [json.loads(m["content"]) for m in completions[1]["messages"]
               if m["role"] == "tool"]
    assert all("error" not in answer for answer in answers), answers
