"""OpenAI-compatible chat completions in JSON mode (VENDORS.md §3), for agent steps.

Credentials: `apiKey`. Options: `model` (default model), `organization`, `project`,
`structuredOutputs` (default true; false for an endpoint without `json_schema` response
formats: the schema is then put in the instructions and JSON mode is used).
The base URL (connection.base_url, else settings.OPENAI_BASE_URL) includes `/v1`.
"""

import json
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import requests

from integrations.base import Action, ActionResult, Connector, CredentialField
from integrations.exceptions import (
    ConnectorAuthError,
    ConnectorBadResponseError,
    ConnectorConfigError,
    ConnectorQuotaExceededError,
    ConnectorRequestError,
)
from integrations.registry import register

JSON_INSTRUCTION = "Reply with a single JSON object."
MAX_RETRY_AFTER = 120  # the official SDK ignores longer hints


@register
class OpenAIConnector(Connector):
    slug = "openai"
    display_name = "OpenAI-compatible endpoint"
    default_base_url = "https://api.openai.com/v1"
    base_url_setting = "OPENAI_BASE_URL"
    rate_limit_default_wait = 2.0
    default_timeout = 60.0  # a model may think for a while
    credential_fields = (CredentialField("apiKey", "API key", help_text="Sent as a Bearer token."),)
    actions = {
        "chat_json": Action(
            "chat_json",
            {"type": "object", "required": ["input"], "additionalProperties": False,
             "properties": {
                 "model": {"type": "string", "minLength": 1},
                 "system": {"type": "string"},
                 "input": {},
                 "tools": {"type": "array", "items": {"type": "object"}},
                 "messages": {"type": "array", "items": {"type": "object"}},
                 "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                 "maxTokens": {"type": "integer", "minimum": 1},
             }},
            "Send `system` (the agent role) and `input` as JSON; parse the JSON reply."),
        "chat": Action(
            "chat",
            {"type": "object", "required": ["messages"], "additionalProperties": False,
             "properties": {
                 "model": {"type": "string", "minLength": 1},
                 "messages": {"type": "array", "minItems": 1, "items": {"type": "object"}},
                 "tools": {"type": "array", "items": {"type": "object"}},
                 "outputSchema": {"type": "object"},
                 "maxTokens": {"type": "integer", "minimum": 1},
             }},
            "One turn of an agent's conversation: the reply's JSON content or its tool calls."),
    }

    def test_connection(self) -> dict:
        body = {"model": self._model({}), "max_tokens": 1,
                "messages": [{"role": "user", "content": "ping"}]}
        reply = self.call_json("POST", f"{self.base_url}/chat/completions", json=body)
        return {"ok": True, "model": reply.get("model")}

    def chat_json(self, params: dict) -> ActionResult:
        system = params.get("system") or "You are a careful assistant."
        if "json" not in system.lower():  # json_object mode requires the word (VENDORS §3.2)
            system = f"{system}\n\n{JSON_INSTRUCTION}"
        user = json.dumps(params.get("input"), ensure_ascii=False)
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user},
                    *params.get("messages", [])]
        body = {"model": self._model(params), "messages": messages,
                "response_format": {"type": "json_object"}}
        if params.get("tools"):
            body["tools"] = params["tools"]
        if "temperature" in params:
            body["temperature"] = params["temperature"]
        if "maxTokens" in params:
            body["max_tokens"] = params["maxTokens"]
        reply = self.call_json("POST", f"{self.base_url}/chat/completions", json=body)
        return ActionResult(output=parse_reply(reply))

    def chat(self, params: dict) -> ActionResult:
        """One model turn of an agent loop. With `outputSchema` the reply is asked for as
        structured output (response_format json_schema), else in JSON mode."""
        messages = list(params["messages"])
        schema = params.get("outputSchema")
        if schema and self.options.get("structuredOutputs", True):
            response_format = {"type": "json_schema", "json_schema": {
                "name": "answer", "schema": schema, "strict": False}}
        else:
            if schema:
                messages.insert(0, {"role": "system", "content": (
                    "Reply with one JSON object that fits this JSON Schema: "
                    + json.dumps(schema, separators=(",", ":")))})
            response_format = {"type": "json_object"}
            text = " ".join(str(m.get("content") or "") for m in messages)
            if "json" not in text.lower():  # json_object mode requires the word (VENDORS §3.2)
                messages.insert(0, {"role": "system", "content": JSON_INSTRUCTION})
        body = {"model": self._model(params), "messages": messages,
                "response_format": response_format}
        if params.get("tools"):
            body["tools"] = params["tools"]
        if "maxTokens" in params:
            body["max_tokens"] = params["maxTokens"]
        reply = self.call_json("POST", f"{self.base_url}/chat/completions", json=body)
        return ActionResult(output=parse_reply(reply, parse_content=False))

    def _model(self, params: dict) -> str:
        model = params.get("model") or self.options.get("model")
        model = model or self.setting("OPENAI_DEFAULT_MODEL", None)
        if not model:
            raise ConnectorConfigError("No model given (params.model or the connection's "
                                       "options.model).")
        return model

    def call(self, method: str, url: str, **kwargs) -> requests.Response:
        key = self.credentials.get("apiKey")
        if not key:
            raise ConnectorConfigError("The OpenAI connection has no apiKey.")
        headers = {"Authorization": f"Bearer {key}"}
        for option, header in (("organization", "OpenAI-Organization"),
                               ("project", "OpenAI-Project")):
            if self.options.get(option):
                headers[header] = self.options[option]
        return super().call(method, url, headers=headers, **kwargs)

    def retry_after(self, resp: requests.Response) -> float | None:
        error = _error(resp)
        if "insufficient_quota" in (error.get("code"), error.get("type")):
            return None
        if resp.headers.get("x-should-retry", "").lower() == "false":
            return None
        wait = _header_seconds(resp.headers)
        if wait is None:
            return self.rate_limit_default_wait
        return min(wait, MAX_RETRY_AFTER)

    def raise_for_status(self, resp: requests.Response, message: str | None = None) -> None:
        error, status = _error(resp), resp.status_code
        detail = error.get("message") or message or resp.text[:200]
        code = error.get("code") or error.get("type") or "error"
        if status == 401:
            raise ConnectorAuthError(
                f"The OpenAI-compatible endpoint rejected the API key (401 {code}): {detail}",
                upstream_status=401, vendor_code=code)
        if status == 429 and "insufficient_quota" in (error.get("code"), error.get("type")):
            raise ConnectorQuotaExceededError(
                f"The OpenAI account has no quota left (429 insufficient_quota): {detail}",
                upstream_status=429, vendor_code="insufficient_quota")
        if status in (400, 404, 422):
            raise ConnectorRequestError(
                f"The OpenAI-compatible endpoint rejected the request ({status} {code}): {detail}",
                upstream_status=status, vendor_code=code)
        super().raise_for_status(resp, detail)


def parse_reply(reply: dict, *, parse_content: bool = True) -> dict:
    """{content (parsed JSON or None), toolCalls, finishReason, model, usage, id}.
    Without `parse_content` the content stays text (an agent loop parses it itself)."""
    try:
        choice = reply["choices"][0]
        message = choice.get("message") or {}
    except (KeyError, IndexError, TypeError, AttributeError):
        raise ConnectorBadResponseError("The chat completion has no choices.") from None
    finish = choice.get("finish_reason")
    if finish == "length":
        raise ConnectorBadResponseError("The model's JSON reply was cut off (finish_reason "
                                        "length); allow more tokens.")
    tool_calls = [_tool_call(call) for call in message.get("tool_calls") or []]
    content = message.get("content")
    if content is None and not tool_calls:
        if message.get("refusal"):
            raise ConnectorRequestError(f"The model refused: {message['refusal']}")
        raise ConnectorBadResponseError("The chat completion has neither content nor tool calls.")
    try:
        parsed = json.loads(content) if content is not None and parse_content else content
    except ValueError:
        raise ConnectorBadResponseError("The model's reply is not valid JSON.") from None
    return {"content": parsed, "toolCalls": tool_calls, "finishReason": finish,
            "model": reply.get("model"), "usage": reply.get("usage"), "id": reply.get("id")}


def _tool_call(call: dict) -> dict:
    function = call.get("function") or {}
    out = {"id": call.get("id"), "name": function.get("name"), "arguments": None,
           "rawArguments": function.get("arguments") or ""}
    try:
        out["arguments"] = json.loads(function.get("arguments") or "{}")
    except ValueError:  # the model may emit invalid JSON here (VENDORS §3.3)
        out["argumentsError"] = "arguments are not valid JSON"
    return out


def _error(resp: requests.Response) -> dict:
    try:
        error = resp.json().get("error")
    except (ValueError, AttributeError):
        return {}
    return error if isinstance(error, dict) else {}


def _header_seconds(headers) -> float | None:
    """retry-after-ms, then retry-after in seconds or as an HTTP date."""
    try:
        if headers.get("retry-after-ms"):
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = parsedate_to_datetime(value)
            return max(0.0, (when - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None
