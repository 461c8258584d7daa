"""Fake OpenAI-compatible chat completions (VENDORS §3.5 checklist)."""

import itertools
import json
import time

from .server import FakeServer, json_response, load_fixture


class FakeOpenAI(FakeServer):
    def __init__(self, api_key: str = "sk-test-0123456789abcdefghijklmnop", *,
                 prefix: str = "/v1"):
        super().__init__()
        self.api_key = api_key
        self.prefix = prefix
        self.replies: list[dict] = []  # scripted replies, used in order
        self._ids = itertools.count(1)

    @property
    def base_url(self) -> str:
        return self.url + self.prefix

    # -- scripting helpers ----------------------------------------------------------

    def reply(self, content=None, *, finish_reason: str = "stop", tool_calls=None) -> None:
        """Queue the next assistant message; dict/list content is sent as a JSON string."""
        if isinstance(content, dict | list):
            content = json.dumps(content)
        self.replies.append({"content": content, "finish_reason": finish_reason,
                             "tool_calls": tool_calls})

    def call_tools(self, *calls, content=None) -> None:
        """Queue a reply calling tools: each call is (id, name, arguments); arguments that
        are not text are sent as JSON, text is sent as it is (a malformed call)."""
        tool_calls = [{"id": call_id, "type": "function", "function": {
            "name": name, "arguments": args if isinstance(args, str) else json.dumps(args)}}
            for call_id, name, args in calls]
        self.reply(content, finish_reason="tool_calls", tool_calls=tool_calls)

    def completions(self) -> list[dict]:
        """The request bodies of every chat completion asked for, in order."""
        return [c.json() for c in self.calls if c.path == f"{self.prefix}/chat/completions"]

    def rate_limit(self, *, times: int = 1, retry_after: int = 1) -> None:
        headers = {"retry-after": str(retry_after), "x-ratelimit-limit-requests": "500",
                   "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s",
                   "x-ratelimit-limit-tokens": "200000", "x-ratelimit-remaining-tokens": "0",
                   "x-ratelimit-reset-tokens": "1s"}
        self.script(429, load_fixture("openai", "error_429_rate_limit"), headers=headers,
                    times=times)

    def quota_exceeded(self, *, times: int = 1) -> None:
        self.script(429, load_fixture("openai", "error_429_quota"), times=times)

    # -- vendor behaviour -----------------------------------------------------------

    def handle(self, request, body, listener):
        headers = {"x-request-id": f"req_{next(self._ids)}"}
        if request.method != "POST" or request.path != f"{self.prefix}/chat/completions":
            return json_response(_error(f"Invalid URL ({request.method} {request.path})",
                                        "invalid_request_error"), 404, headers)
        auth = request.headers.get("Authorization", "")
        key = auth.removeprefix("Bearer ")
        if not auth.startswith("Bearer ") or key != self.api_key:
            masked = f"{key[:3]}{'*' * max(len(key) - 7, 0)}{key[-4:]}" if len(key) > 7 else "***"
            return json_response(load_fixture("openai", "error_401", masked=masked), 401, headers)
        try:
            payload = json.loads(body or b"null")
        except ValueError:
            payload = None
        problem = _invalid(payload)
        if problem:
            return json_response(problem, 400, headers)
        return json_response(self._completion(payload), 200, headers)

    def _completion(self, payload: dict) -> dict:
        scripted = self.replies.pop(0) if self.replies else None
        if scripted is None:
            user = next((m["content"] for m in reversed(payload["messages"])
                         if m.get("role") == "user"), "")
            scripted = {"content": json.dumps({"echo": user}), "finish_reason": "stop",
                        "tool_calls": None}
        message = {"role": "assistant", "content": scripted["content"], "refusal": None}
        if scripted["tool_calls"]:
            message["tool_calls"] = scripted["tool_calls"]
        return {"id": f"chatcmpl-{next(self._ids)}", "object": "chat.completion",
                "created": int(time.time()), "model": payload["model"],
                "choices": [{"index": 0, "finish_reason": scripted["finish_reason"],
                             "logprobs": None, "message": message}],
                "usage": {"prompt_tokens": 31, "completion_tokens": 14, "total_tokens": 45}}


def _error(message: str, type_: str, param=None, code=None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _invalid(payload) -> dict | None:
    if not isinstance(payload, dict):
        return _error("We could not parse the JSON body of your request.",
                      "invalid_request_error")
    if not payload.get("model"):
        return _error("you must provide a model parameter", "invalid_request_error")
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        return _error("Missing required parameter: 'messages'.", "invalid_request_error",
                      "messages", "missing_required_parameter")
    problem = _tool_turns_problem(messages)
    if problem:
        return _error(problem, "invalid_request_error", "messages")
    if (payload.get("response_format") or {}).get("type") == "json_object":
        text = " ".join(str(m.get("content") or "") for m in messages if isinstance(m, dict))
        if "json" not in text.lower():
            return load_fixture("openai", "error_400_json_word")
    return None


def _tool_turns_problem(messages: list) -> str | None:
    """What the real endpoint answers 400 for: a tool message that answers no tool call
    of the assistant message before it, or a tool call left without an answer."""
    open_ids: set = set()
    for message in messages:
        role = message.get("role") if isinstance(message, dict) else None
        if role == "tool":
            if message.get("tool_call_id") not in open_ids:
                return ("Invalid parameter: messages with role 'tool' must be a response to a "
                        "preceeding message with 'tool_calls'.")
            open_ids.discard(message["tool_call_id"])
            continue
        if open_ids:
            return ("An assistant message with 'tool_calls' must be followed by tool messages "
                    "responding to each 'tool_call_id'. The following tool_call_ids did not "
                    f"have response messages: {', '.join(sorted(open_ids))}")
        if role == "assistant":
            open_ids = {call.get("id") for call in message.get("tool_calls") or []}
    return None
