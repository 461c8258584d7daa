"""A real worker killed (SIGKILL) in the middle of an agent's loop, between its two tool
calls: the next worker resumes from the recorded turns and tool results. Each tool's
effect happens once (counted by the fake tool backend) and the model is not asked again
for a turn already recorded."""

import pytest

from automation.api.services import function_save
from automation.connections.services import connection_create
from automation.models import Run, StepRun
from automation.services.agents import agent_save
from automation.services.processes import process_save
from automation.services.runs import run_start
from tests.integrations.fakes.openai import FakeOpenAI
from tests.integrations.fakes.tools import ToolServer
from tests.worker import Worker, sweep_until_finished

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

KEY = "sk-test-agents-worker-0123456789"
ARGS = {"type": "object", "properties": {"text": {"type": "string"}}}


@pytest.fixture
def servers():
    model = FakeOpenAI(api_key=KEY).start()
    tools = ToolServer({"first-tool": {"ok": 1}, "second-tool": {"ok": 2}}).start()
    yield model, tools
    model.stop()
    tools.stop()


def test_worker_killed_between_two_tool_calls_resumes_without_asking_again(
        servers, queued_mode, tmp_path):
    model, tools = servers
    connection_create(provider="openai", name="llm", base_url=model.base_url,
                      credentials={"apiKey": KEY}, options={"model": "gpt-test"})
    for name in ("first-tool", "second-tool"):
        function_save(name=name, action="webhook.post", params_schema=ARGS,
                      config={"url": tools.tool_url(name), "secret": "whsec-0123456789",
                              "payload": "{{ result }}"})
    agent_save(key="worker-agent", instructions="Use both tools, then answer in JSON.",
               tools=["first-tool", "second-tool"])
    process = process_save(slug="agent-kill", name="Agent kill", definition={"steps": [
        {"id": "agent", "type": "agent", "config": {"agentRole": "worker-agent"}}]})
    model.call_tools(("one", "first-tool", {"text": "a"}), ("two", "second-tool", {"text": "b"}))
    model.reply({"done": True})
    tools.hold("second-tool")  # the first worker dies while the second call is out

    env = {"ENTITYFLOW_STEP_LEASE_SECONDS": "5", "Q_TIMEOUT": "20", "Q_RETRY": "30"}
    first = Worker(tmp_path / "w1.log", **env)
    try:
        run, _ = run_start(process=process, trigger={"type": "manual"})
        assert tools.arrived["second-tool"].wait(60), "the second tool call never came"
        one = StepRun.objects.get(run=run, step_id="agent/one")
        assert one.status == StepRun.Status.COMPLETED  # recorded before the second began
    finally:
        first.kill()
    tools.release("second-tool")
    assert len(model.completions()) == 1
    agent = StepRun.objects.get(run=run, step_id="agent")
    assert agent.status == StepRun.Status.RUNNING
    assert [m["role"] for m in agent.state["agent"]["messages"]] == [
        "system", "user", "assistant", "tool"]

    second = Worker(tmp_path / "w2.log", **env)
    try:
        sweep_until_finished(run, message="the run to finish after the kill")
    finally:
        second.stop()
    assert run.status == Run.Status.COMPLETED, run.error
    assert run.result == {"done": True}
    # the model: the recorded first turn was not asked again, only the final one
    assert len(model.completions()) == 2
    # each effect once; the second tool was sent again with the same idempotency key
    assert tools.effect_count("first-tool") == tools.effect_count("second-tool") == 1
    assert tools.requests_to("first-tool") == 1 and tools.requests_to("second-tool") == 2
    agent.refresh_from_db()
    assert agent.attempt == 2 and "lost its worker" in str(agent.logs)
    assert {c.step_id: c.status for c in agent.children.all()} == {
        "agent/one": "completed", "agent/two": "completed"}
