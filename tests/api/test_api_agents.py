"""GET/POST/PUT/PATCH /api/agents in the one error format (docs/user-guide/agents.md)."""

from automation.api.services import function_save
from automation.connections.services import connection_create
from automation.models import Agent
from tests.api.support import API_DB, assert_error

pytestmark = API_DB

REVIEWER = {"key": "content-reviewer", "instructions": "Review the article; answer in JSON.",
            "tools": ["sentiment-analysis"], "maxIterations": 4,
            "outputSchema": {"type": "object", "required": ["requiresHumanReview"]}}


def _tools():
    function_save(name="sentiment-analysis", action="noop", config={},
                  params_schema={"type": "object", "properties": {"text": {"type": "string"}}})


def test_create_get_list_put_patch_each_change_a_new_version(api):
    _tools()
    created = api.post("/api/agents", REVIEWER, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["version"] == 1 and body["tools"] == ["sentiment-analysis"]
    assert body["maxIterations"] == 4 and body["maxToolCalls"] == 20
    assert body["connection"] is None and body["outputSchema"] == REVIEWER["outputSchema"]
    assert api.get("/api/agents/content-reviewer").json() == body
    assert api.get("/api/agents").json()["count"] == 1

    replaced = api.put("/api/agents/content-reviewer",
                       {"instructions": "Be brief; JSON.", "maxTokens": 5000}, format="json")
    assert replaced.status_code == 200, replaced.content
    assert replaced.json()["version"] == 2 and replaced.json()["tools"] == []
    assert replaced.json()["maxIterations"] == 10  # PUT: what is not given is the default

    patched = api.patch("/api/agents/content-reviewer", {"maxIterations": 3}, format="json")
    assert patched.status_code == 200, patched.content
    assert patched.json()["version"] == 3 and patched.json()["maxIterations"] == 3
    assert patched.json()["instructions"] == "Be brief; JSON."
    assert patched.json()["maxTokens"] == 5000


def test_bad_fields_are_422_naming_them_and_nothing_is_written(api):
    _tools()
    connection_create(provider="http", name="plain-http", credentials={})
    cases = [({"tools": ["sentiment-analysis", "nope"]}, "tools[1]"),
             ({"maxIterations": 0}, "maxIterations"),
             ({"maxToolCalls": -1}, "maxToolCalls"),
             ({"outputSchema": {"type": "no-such-type"}}, "outputSchema"),
             ({"outputSchema": "json"}, "outputSchema"),
             ({"connection": "missing"}, "connection"),
             ({"connection": "plain-http"}, "connection"),
             ({"key": "Not A Slug"}, "key"),
             ({"instructions": ""}, "instructions")]
    for change, field in cases:
        error = assert_error(api.post("/api/agents", {**REVIEWER, **change}, format="json"), 422)
        assert field in error["fields"], (change, error)
    assert not Agent.objects.exists()


def test_patch_errors_change_nothing_and_unknown_agents_are_404(api):
    _tools()
    api.post("/api/agents", REVIEWER, format="json")
    error = assert_error(api.patch("/api/agents/content-reviewer", {"tools": ["ghost"]},
                                   format="json"), 422)
    assert error["fields"] == {"tools[0]": ["Unknown function 'ghost'."]}
    assert Agent.objects.get().version == 1 and Agent.objects.get().tools == [
        "sentiment-analysis"]
    assert_error(api.patch("/api/agents/content-reviewer", {"key": "renamed"}, format="json"),
                 422)
    assert_error(api.get("/api/agents/nobody"), 404)
    assert_error(api.patch("/api/agents/nobody", {}, format="json"), 404)
    assert_error(api.post("/api/agents", REVIEWER, format="json"), 409)


def test_agents_need_authentication(client, db):
    assert_error(client.get("/api/agents"), 401)


def test_a_function_an_agent_uses_as_a_tool_cannot_be_deleted(api):
    _tools()
    api.post("/api/agents", REVIEWER, format="json")
    error = assert_error(api.delete("/api/functions/sentiment-analysis"), 409)
    assert "tool of agents: content-reviewer" in error["message"]
    api.patch("/api/agents/content-reviewer", {"tools": []}, format="json")
    assert api.delete("/api/functions/sentiment-analysis").status_code == 204
