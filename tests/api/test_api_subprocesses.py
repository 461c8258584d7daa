"""Sub-processes over the API: the parent's `process` step names its child execution, the
child names its parent (docs/user-guide/sub-processes.md); a cancel cascades."""

import pytest

from automation.services.processes import process_save

pytestmark = pytest.mark.django_db(transaction=True)


def save(slug: str, steps: list[dict]) -> None:
    process_save(slug=slug, name=slug, definition={"steps": steps, "triggers": []})


def trigger(api, slug: str, body: dict | None = None) -> str:
    response = api.post(f"/api/workflow-definitions/{slug}/trigger", body or {}, format="json")
    assert response.status_code == 202, response.content
    return response.json()["executionId"]


def test_parent_and_child_executions_link_both_ways(api):
    save("child", [{"id": "answer", "type": "function", "function": "transform",
                    "config": {"params": {"output": {"tripled": "input.n * 3"}}}}])
    save("parent", [{"id": "call", "type": "process",
                     "config": {"process": "child", "input": {"n": "input.n"}}}])
    run_id = trigger(api, "parent", {"input": {"n": 5}})
    parent = api.get(f"/api/executions/{run_id}?expand=steps").json()
    assert (parent["status"], parent["result"]) == ("completed", {"tripled": 15})
    assert parent["parentExecutionId"] is None
    [call] = parent["steps"]
    assert call["type"] == "process" and call["output"] == {"tripled": 15}
    child = api.get(f"/api/executions/{call['childExecutionId']}?expand=steps").json()
    assert child["parentExecutionId"] == run_id and child["workflowDefinitionId"] == "child"
    assert child["trigger"]["type"] == "process" and child["steps"][0]["childExecutionId"] is None


def test_cancelling_the_parent_over_the_api_cancels_the_child(api):
    save("ask", [{"id": "ok", "type": "human", "config": {"approvers": ["boss@example.com"]}}])
    save("asks", [{"id": "call", "type": "process", "config": {"process": "ask"}}])
    run_id = trigger(api, "asks")
    parent = api.get(f"/api/executions/{run_id}?expand=steps").json()
    assert parent["status"] == "waiting" and parent["steps"][0]["status"] == "waiting"
    child_id = parent["steps"][0]["childExecutionId"]
    assert api.get(f"/api/executions/{child_id}").json()["status"] == "waiting"
    assert api.post(f"/api/executions/{run_id}/cancel").json()["status"] == "cancelled"
    child = api.get(f"/api/executions/{child_id}").json()
    assert child["status"] == "cancelled"
    assert child["error"]["message"] == f"Cancelled with its parent execution {run_id}."


def test_saving_a_process_step_naming_no_process_is_a_422_with_its_path(api):
    response = api.post("/api/workflow-definitions", {
        "id": "lost", "name": "Lost",
        "steps": [{"id": "call", "type": "process", "config": {"process": "nowhere"}}],
        "triggers": []}, format="json")
    assert response.status_code in (400, 422), response.content
    body = response.json()
    assert "steps[0].config.process" in str(body), body
