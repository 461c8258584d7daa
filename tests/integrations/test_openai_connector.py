import json

import pytest
import requests

from integrations.exceptions import (
    ConnectorAuthError,
    ConnectorBadResponseError,
    ConnectorConfigError,
    ConnectorQuotaExceededError,
    ConnectorRateLimitedError,
    ConnectorUnavailableError,
)
from integrations.openai import OpenAIConnector


def test_chat_json_sends_json_mode_and_parses_the_reply(openai, openai_fake):
    openai_fake.reply({"urgency": "high", "canAutomate": False})
    result = openai.run("chat_json", {"system": "You triage support tickets.",
                                      "input": {"subject": "Server down", "customer": "Acme"}})
    assert result.output["content"] == {"urgency": "high", "canAutomate": False}
    assert result.output["finishReason"] == "stop" and result.output["toolCalls"] == []
    sent = openai_fake.calls[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["Authorization"] == f"Bearer {openai_fake.api_key}"
    body = sent.json()
    assert body["model"] == "gpt-4o-mini"
    assert body["response_format"] == {"type": "json_object"}
    assert body["messages"][0]["role"] == "system"
    assert body["messages"][0]["content"].startswith("You triage support tickets.")
    assert "JSON" in body["messages"][0]["content"]
    assert json.loads(body["messages"][1]["content"]) == {"subject": "Server down",
                                                          "customer": "Acme"}


def test_a_system_prompt_that_mentions_json_is_left_alone(openai, openai_fake):
    openai.run("chat_json", {"system": "Answer in json.", "input": {"a": 1}, "model": "m-2",
                             "temperature": 0, "maxTokens": 50})
    body = openai_fake.calls[0].json()
    assert body["messages"][0]["content"] == "Answer in json."
    assert body["model"] == "m-2" and body["temperature"] == 0 and body["max_tokens"] == 50


def test_the_fake_enforces_the_json_word(openai_fake):
    resp = requests.post(openai_fake.base_url + "/chat/completions", timeout=5,
                         headers={"Authorization": f"Bearer {openai_fake.api_key}"},
                         json={"model": "m", "response_format": {"type": "json_object"},
                               "messages": [{"role": "user", "content": "hello"}]})
    assert resp.status_code == 400
    assert "must contain the word 'json'" in resp.json()["error"]["message"]


def test_tool_calls_are_returned_parsed(openai, openai_fake):
    openai_fake.reply(None, finish_reason="tool_calls", tool_calls=[
        {"id": "call_1", "type": "function", "function": {
            "name": "lookup_contact", "arguments": "{\"email\":\"ada@example.com\"}"}},
        {"id": "call_2", "type": "function", "function": {"name": "broken", "arguments": "{"}}])
    tools = [{"type": "function", "function": {"name": "lookup_contact", "parameters": {
        "type": "object", "properties": {"email": {"type": "string"}}}}}]
    result = openai.run("chat_json", {"input": {"q": "who?"}, "tools": tools})
    assert openai_fake.calls[0].json()["tools"] == tools
    assert result.output["content"] is None
    assert result.output["toolCalls"] == [
        {"id": "call_1", "name": "lookup_contact", "arguments": {"email": "ada@example.com"},
         "rawArguments": "{\"email\":\"ada@example.com\"}"},
        {"id": "call_2", "name": "broken", "arguments": None, "rawArguments": "{",
         "argumentsError": "arguments are not valid JSON"}]


def test_bad_api_key_fails_at_once(openai_fake, connect):
    connector = connect("openai", {"apiKey": "sk-wrong-key-abcdefghij"}, openai_fake.base_url,
                        {"model": "m"})
    with pytest.raises(ConnectorAuthError) as exc:
        connector.run("chat_json", {"input": {}})
    assert str(exc.value).startswith("The OpenAI-compatible endpoint rejected the API key "
                                     "(401 invalid_api_key): Incorrect API key provided")
    assert "sk-wrong-key-abcdefghij" not in str(exc.value)
    assert openai_fake.count() == 1


def test_rate_limit_is_waited_out(openai, openai_fake, sleeps):
    openai_fake.rate_limit(retry_after=1)
    openai_fake.reply({"ok": True})
    assert openai.run("chat_json", {"input": {}}).output["content"] == {"ok": True}
    assert sleeps == [1.0] and openai_fake.count() == 2


def test_rate_limit_beyond_the_bound(openai, openai_fake, sleeps):
    openai_fake.rate_limit(retry_after=1, times=4)
    with pytest.raises(ConnectorRateLimitedError) as exc:
        openai.run("chat_json", {"input": {}})
    assert exc.value.retryable and exc.value.retry_after == 1.0
    assert openai_fake.count() == 4


def test_insufficient_quota_is_not_retried(openai, openai_fake, sleeps):
    openai_fake.quota_exceeded()
    with pytest.raises(ConnectorQuotaExceededError) as exc:
        openai.run("chat_json", {"input": {}})
    assert not exc.value.retryable and sleeps == [] and openai_fake.count() == 1
    assert "insufficient_quota" in str(exc.value)


def test_server_errors_are_retryable(openai, openai_fake):
    openai_fake.script(503, {"error": {"message": "Slow Down", "type": "server_error",
                                       "param": None, "code": None}})
    with pytest.raises(ConnectorUnavailableError, match="Slow Down") as exc:
        openai.run("chat_json", {"input": {}})
    assert exc.value.retryable


@pytest.mark.parametrize("reply,finish,match", [
    ("not json", "stop", "not valid JSON"),
    ('{"cut": ', "length", "cut off"),
])
def test_unusable_replies(openai, openai_fake, reply, finish, match):
    openai_fake.reply(reply, finish_reason=finish)
    with pytest.raises(ConnectorBadResponseError, match=match):
        openai.run("chat_json", {"input": {}})


def test_model_is_required_somewhere(openai_fake, connect):
    connector = connect("openai", {"apiKey": openai_fake.api_key}, openai_fake.base_url)
    with pytest.raises(ConnectorConfigError, match="No model"):
        connector.run("chat_json", {"input": {}})
    assert openai_fake.count() == 0


def test_test_connection(openai):
    assert openai.test_connection() == {"ok": True, "model": "gpt-4o-mini"}


def test_params_schema():
    assert OpenAIConnector.validate_params("chat_json", {}) == {"input": ["is required"]}
    assert OpenAIConnector.validate_params("chat_json", {"input": 1, "tools": [1]}) == {
        "tools[0]": ["must be of type object"]}


def test_chat_asks_for_structured_output_unless_the_endpoint_lacks_it(openai_fake, connect):
    schema = {"type": "object", "required": ["urgency"]}
    turn = {"messages": [{"role": "system", "content": "Triage."},
                         {"role": "user", "content": "{\"subject\": \"down\"}"}],
            "outputSchema": schema}
    structured = connect("openai", {"apiKey": openai_fake.api_key}, openai_fake.base_url,
                         {"model": "m"})
    openai_fake.reply({"urgency": "high"})
    result = structured.run("chat", turn)
    assert result.output["content"] == '{"urgency": "high"}'  # the agent loop parses it
    body = openai_fake.calls[-1].json()
    assert body["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "answer", "schema": schema, "strict": False}}
    plain = connect("openai", {"apiKey": openai_fake.api_key}, openai_fake.base_url,
                    {"model": "m", "structuredOutputs": False})
    openai_fake.reply({"urgency": "high"})
    plain.run("chat", turn)
    body = openai_fake.calls[-1].json()
    assert body["response_format"] == {"type": "json_object"}
    assert json.dumps(schema, separators=(",", ":")) in body["messages"][0]["content"]
