"""The agent loop (docs/user-guide/agents.md): ask the model, run the tools it calls,
give it their results, until it answers without tool calls or a limit is hit.

Durable turn by turn: every model reply and every tool result is written to the step
run's state before the next one is asked for, and each tool call is a child step run
(store/children.py) with its own record, idempotency key and attempts. A worker that
dies mid-loop leaves all that behind; the next attempt of the step picks it up and asks
the model only for turns not yet recorded, and runs only the tool calls with no result.
"""

import json
import time
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.utils import timezone
from jsonschema import Draft202012Validator

from automation.definitions import Step
from automation.definitions.steps.outcome import Outcome
from automation.exceptions import AutomationError, StepDeferredError, StepFailedError
from automation.functions import StepContext, resolve_function
from automation.functions.catalog import function_row
from automation.functions.connectors import call_connector
from automation.functions.redaction import redact
from automation.functions.registry import validate_params
from automation.models import Agent, StepRun
from automation.store import Claim, RunStore
from automation.store.state import StepState
from entities.exceptions import ExpressionError
from integrations.exceptions import ConnectorError

TOOL_ATTEMPTS = 3  # a tool whose call fails with a retryable error is tried this often
TOOL_BACKOFF_SECONDS = 0.5
MAX_TOOL_RESULT_CHARS = 20_000  # what a tool returns is cut to this before the model sees it
ANY_OBJECT = {"type": "object"}


class AgentLimitError(StepFailedError):
    """A limit of the loop was hit; trying again would hit it again."""

    code = "agent_limit"

    def __init__(self, message: str):
        super().__init__(message, retryable=False)


class Journal:
    """The store's side of one agent step: its saved state and its tool calls."""

    def __init__(self, store: RunStore, claim: Claim, lease_seconds: int):
        self.store, self.claim, self.lease_seconds = store, claim, lease_seconds

    def saved(self) -> dict | None:
        return StepState.from_json(self.claim.step_run.state).agent

    def save(self, state: dict) -> None:
        # each write renews the lease: a long loop that keeps recording is alive
        self.store.save_running_state(self.claim, {"agent": redact(state)},
                                      lease_seconds=self.lease_seconds)


def limits(step: Step, agent: Agent) -> dict[str, Any]:
    """The step's `config.<limit>` over the agent's own."""
    config = step.config
    return {"maxIterations": config.get("maxIterations", agent.max_iterations),
            "maxToolCalls": config.get("maxToolCalls", agent.max_tool_calls),
            "maxTokens": config.get("maxTokens", agent.max_tokens),
            "timeout": config.get("timeoutSeconds", agent.timeout_seconds)}


def tool_name(function: str) -> str:
    """Function names may hold dots; the model's tool names may not."""
    return function.replace(".", "__")


def tool_definitions(functions: list[str]) -> dict[str, tuple[str, dict, dict]]:
    """tool name -> (function name, its params JSON Schema, the tool sent to the model)."""
    tools = {}
    for name in functions:
        row = function_row(name)
        schema = (row.params_schema if row is not None else None) or ANY_OBJECT
        description = ""
        if row is None:
            spec, _, _ = resolve_function(name, {})
            description = spec.description
        tool = {"type": "function", "function": {
            "name": tool_name(name), "description": description[:1000] or name,
            "parameters": schema}}
        tools[tool_name(name)] = (name, schema, tool)
    return tools


def run_agent(step: Step, ctx: StepContext, journal: Journal | None) -> Outcome:
    config = step.config
    agent = Agent.objects.filter(key=config.get("agentRole")).select_related("connection").first()
    if agent is None:
        raise StepFailedError(f"No agent '{config.get('agentRole')}'.", code="agent_not_found",
                              retryable=False)
    bounds = limits(step, agent)
    tools = tool_definitions(config["tools"] if "tools" in config else list(agent.tools))
    state = (journal.saved() if journal is not None else None) or {
        "agent": agent.key, "agentVersion": agent.version,
        "startedAt": timezone.now().isoformat(),
        "messages": [{"role": "system", "content": agent.instructions},
                     {"role": "user", "content": json.dumps(ctx.input, default=str)}],
        "iterations": 0, "toolCalls": 0,
        "usage": {"promptTokens": 0, "completionTokens": 0, "totalTokens": 0}, "cost": "0"}
    loop = _Loop(step, ctx, journal, agent, bounds, tools, state)
    try:  # a failure is raised on to the engine; the turns so far are saved already
        output = loop.run()
    finally:
        ctx.log(f"agent {agent.key} v{state['agentVersion']}: {state['iterations']} model "
                f"turn(s), {state['toolCalls']} tool call(s), "
                f"{state['usage']['totalTokens']} tokens, cost {state['cost']}")
    return Outcome("completed", output=output, logs=ctx.logs, state={"agent": redact(state)})


class _Loop:
    def __init__(self, step, ctx, journal, agent, bounds, tools, state):
        self.step, self.ctx, self.journal, self.agent = step, ctx, journal, agent
        self.bounds, self.tools, self.state = bounds, tools, state
        self.messages: list = state["messages"]

    def save(self) -> None:
        if self.journal is not None:
            self.journal.save(self.state)

    def run(self) -> Any:
        while True:
            self._check_time()
            pending = self._unanswered()
            if pending:
                for call in pending:
                    self._check_time()
                    result = self._run_tool(call)
                    self.messages.append({"role": "tool", "tool_call_id": call["id"],
                                          "content": result})
                    self.save()
                continue
            last = self.messages[-1]
            if last["role"] == "assistant":
                answer, problem = self._answer(last.get("content"))
                if problem is None:
                    return answer
                self.messages.append({"role": "user", "content": (
                    f"Your answer does not fit the required JSON output: {problem} "
                    "Reply again with one JSON object that fits it.")})
                self.save()
                continue
            self._ask()

    def _unanswered(self) -> list[dict]:
        """The tool calls of the latest model turn that have no recorded result yet."""
        for index in range(len(self.messages) - 1, -1, -1):
            message = self.messages[index]
            if message["role"] == "assistant":
                answered = {m.get("tool_call_id") for m in self.messages[index + 1:]}
                return [c for c in message.get("tool_calls") or [] if c["id"] not in answered]
        return []

    # -- the model -----------------------------------------------------------------

    def _ask(self) -> None:
        state, bounds = self.state, self.bounds
        if state["iterations"] >= bounds["maxIterations"]:
            raise AgentLimitError(
                f"The agent '{self.agent.key}' reached its limit of maxIterations "
                f"({bounds['maxIterations']} model turns) without a final answer.")
        params = {"messages": self.messages,
                  "tools": [tool for _, _, tool in self.tools.values()] or None,
                  "outputSchema": self.agent.output_schema or None,
                  "model": self.step.config.get("model") or self.agent.model or None}
        turn = StepContext(**{**self.ctx.__dict__, "logs": self.ctx.logs,
                              "idempotency_key": f"{self.ctx.idempotency_key}:turn"
                                                 f"{state['iterations'] + 1}"})
        connection = self.agent.connection.name if self.agent.connection_id else None
        connection = self.step.config.get("connection") or connection
        reply = call_connector(turn, provider="openai", action="chat",
                               connection_name=connection, params=params)
        state["iterations"] += 1
        self._count(reply.get("usage") or {})
        message: dict[str, Any] = {"role": "assistant", "content": reply.get("content")}
        calls = reply.get("toolCalls") or []
        if calls:
            message["tool_calls"] = [
                {"id": call.get("id") or f"call_{state['iterations']}_{i}", "type": "function",
                 "function": {"name": call.get("name") or "", "arguments": call["rawArguments"]}}
                for i, call in enumerate(calls)]
            state["toolCalls"] += len(calls)
        self.messages.append(message)
        self.save()  # the turn is recorded before any tool runs or any limit fails it
        if calls and state["toolCalls"] > self.bounds["maxToolCalls"]:
            raise AgentLimitError(
                f"The agent '{self.agent.key}' reached its limit of maxToolCalls "
                f"({self.bounds['maxToolCalls']}).")

    def _count(self, usage: dict) -> None:
        totals = self.state["usage"]
        prompt, completion = usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0
        totals["promptTokens"] += prompt
        totals["completionTokens"] += completion
        totals["totalTokens"] += usage.get("total_tokens") or prompt + completion
        cost = Decimal(self.state["cost"]) + (
            prompt * self.agent.input_price + completion * self.agent.output_price) / 1_000_000
        self.state["cost"] = str(cost.normalize() if cost else Decimal(0))
        budget = self.bounds["maxTokens"]
        if budget and totals["totalTokens"] > budget:
            self.save()
            raise AgentLimitError(
                f"The agent '{self.agent.key}' reached its limit of maxTokens ({budget}); "
                f"{totals['totalTokens']} used.")

    def _check_time(self) -> None:
        timeout = self.bounds["timeout"]
        if not timeout:
            return
        started = datetime.fromisoformat(self.state["startedAt"])
        if (timezone.now() - started).total_seconds() > timeout:
            raise AgentLimitError(
                f"The agent '{self.agent.key}' reached its limit of timeout ({timeout}s).")

    def _answer(self, content: Any) -> tuple[Any, str | None]:
        if not isinstance(content, str):
            return None, "the reply has no content."
        try:
            answer = json.loads(content)
        except ValueError:
            return None, "the reply is not valid JSON."
        schema = self.agent.output_schema
        if schema:
            errors = sorted(Draft202012Validator(schema).iter_errors(answer),
                            key=lambda e: list(e.absolute_path))
            if errors:
                where = ".".join(str(p) for p in errors[0].absolute_path) or "(the answer)"
                return None, f"{where}: {errors[0].message}."
        return answer, None

    # -- the tools -----------------------------------------------------------------

    def _run_tool(self, call: dict) -> str:
        """The tool message's content: the function's output as JSON, or an error the
        model can act on."""
        name = call["function"]["name"]
        if name not in self.tools:
            return _error(f"There is no tool '{name}'; the tools are "
                          f"{', '.join(sorted(self.tools)) or 'none'}.")
        function, schema, _ = self.tools[name]
        try:
            arguments = json.loads(call["function"]["arguments"] or "{}")
        except ValueError:
            self.ctx.log(f"tool call {call['id']} to {function}: arguments are not valid JSON")
            return _error("The arguments are not valid JSON; call the tool again with a JSON "
                          "object.")
        problems = list(Draft202012Validator(schema).iter_errors(arguments))
        if problems:
            where = ".".join(str(p) for p in problems[0].absolute_path) or "(arguments)"
            self.ctx.log(f"tool call {call['id']} to {function}: arguments do not fit")
            return _error(f"The arguments do not fit the tool's schema: {where}: "
                          f"{problems[0].message}.")
        output = self._execute(call["id"], function, arguments)
        text = json.dumps(output, default=str)
        return text[:MAX_TOOL_RESULT_CHARS]

    def _execute(self, call_id: str, function: str, arguments: Any) -> Any:
        """Run the function as a child step execution; a recorded one is not run again."""
        journal = self.journal
        child = None
        if journal is not None:
            child = journal.store.start_child(journal.claim, call_id, step_type="function",
                                              input={"function": function, "arguments": arguments})
            if child.status == StepRun.Status.COMPLETED:
                return child.output
            if child.status == StepRun.Status.FAILED:
                return {"error": (child.error or {}).get("message")}
        attempt = child.attempt if child is not None else 1
        while True:
            started = time.monotonic()
            outcome = self._attempt(call_id, function, arguments, attempt)
            duration = int((time.monotonic() - started) * 1000)
            if outcome.kind == "failed" and outcome.retryable and attempt < TOOL_ATTEMPTS:
                message = f"attempt {attempt} failed: {outcome.error['message']}; retrying"
                if child is not None:
                    journal.store.next_child_attempt(child, message)
                attempt += 1
                time.sleep(max(TOOL_BACKOFF_SECONDS * attempt, outcome.retry_after or 0))
                continue
            outcome.output, outcome.error = redact(outcome.output), redact(outcome.error)
            outcome.logs = redact(outcome.logs)
            if child is not None:
                journal.store.finish_child(child, outcome, duration_ms=duration)
            if outcome.kind == "failed":
                return {"error": outcome.error["message"]}
            return outcome.output

    def _attempt(self, call_id: str, function: str, arguments: Any, attempt: int) -> Outcome:
        ctx = self.ctx
        step_id = f"{self.step.id}/{call_id}"
        scope_key = self.journal.claim.step_run.scope if self.journal is not None else ""
        tool_ctx = StepContext(
            run_id=ctx.run_id, step_id=step_id, attempt=attempt, input=arguments, params={},
            scope={**ctx.scope, "result": arguments}, entity=ctx.entity,
            idempotency_key=f"{ctx.run_id}:{step_id}:{scope_key}:{attempt}")
        try:
            spec, params, connection = resolve_function(function, {})
            validate_params(spec, params)
            tool_ctx.params, tool_ctx.connection = params, connection
            output = spec.handler(tool_ctx)
        except StepDeferredError:
            # The tool's connection has no free request within the short wait a step may
            # take (functions.ratelimit): nothing was sent. The whole agent step is put
            # off, as any step is, not failed; its transcript is saved after every turn
            # and tool result, so it carries on from this call, which keeps its child row
            # and attempt (the same idempotency key). docs/user-guide/agents.md
            raise
        except (ExpressionError, AutomationError) as exc:
            return Outcome.failed(exc.message, code=exc.code,
                                  retryable=getattr(exc, "retryable", False), logs=tool_ctx.logs)
        except ConnectorError as exc:
            return Outcome.failed(getattr(exc, "message", None) or str(exc),
                                  code=getattr(exc, "code", "connector_error"),
                                  retryable=getattr(exc, "retryable", False),
                                  retry_after=getattr(exc, "retry_after", None),
                                  logs=tool_ctx.logs)
        except Exception as exc:  # a function's bug fails the tool call, not the loop
            return Outcome.failed(f"{type(exc).__name__}: {exc}", code="function_error",
                                  logs=tool_ctx.logs)
        return Outcome("completed", output=output, logs=tool_ctx.logs)


def _error(message: str) -> str:
    return json.dumps({"error": message})
