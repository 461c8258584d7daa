"""Every registered step type implements the whole interface, and each behaves as the
engine, the dry run and the editor expect, without a database."""

import ast
import inspect
from pathlib import Path
from typing import Any

import pytest

from automation.definitions import build_graph, validate_definition
from automation.definitions.errors import DefinitionErrors
from automation.definitions.steps import (
    STEP_TYPES,
    Outcome,
    Step,
    StepPolicy,
    StepType,
    UnknownStepTypeError,
    register,
    step_type,
)
from automation.exceptions import StepFailedError

NAMES = ["function", "condition", "parallel", "loop", "human", "agent", "wait", "waitForEvent",
         "process"]
HOOKS = ["validate", "validate_params", "edges", "execute", "policy", "dry_run", "summary"]
STEPS_DIR = Path(__file__).resolve().parents[2] / "automation" / "definitions" / "steps"
FORBIDDEN = ("automation.engine", "automation.functions", "automation.services",
             "automation.models", "automation.store", "automation.triggers",
             "automation.inbound", "integrations")


class FakeRuntime:
    """A StepRuntime for tests: records what a step asked of the engine."""

    def __init__(self, *, input: Any = None, scope: dict | None = None, answer: Any = None):
        self.input, self.scope, self.logs = input, scope or {}, []
        self.answer, self.calls = answer, []

    def log(self, message: str, **data: Any) -> None:
        self.logs.append({"message": message, **({"data": data} if data else {})})

    def call_function(self, step: Step) -> Any:
        self.calls.append(("function", step.id))
        return self.answer

    def run_agent(self, step: Step) -> Outcome:
        self.calls.append(("agent", step.config["agentRole"], self.input))
        return Outcome("completed", output=self.answer, logs=self.logs)


def make(raw: dict) -> Step:
    nxt = raw.get("next") or []
    return Step(raw["id"], raw["type"], raw, [nxt] if isinstance(nxt, str) else list(nxt))


def problems(raw: dict, *, known=("test.record",)) -> dict[str, list[str]]:
    errors = DefinitionErrors()
    step_type(raw["type"]).validate(raw, "steps[0]", errors, function_exists=lambda n: n in known)
    return errors.fields


def never_cheap(name: str) -> bool:
    return False


# The interface ---------------------------------------------------------------------------

def test_builtin_step_types_are_registered_once_each():
    assert list(STEP_TYPES) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_step_type_implements_the_interface(name):
    kind = step_type(name)
    assert isinstance(kind, StepType) and kind.name == name
    assert kind.description and "\n" not in kind.description
    assert type(kind).execute is not StepType.execute, "execute() missing"
    for hook in HOOKS:
        assert callable(getattr(kind, hook))
    assert isinstance(kind.has_body, bool) and isinstance(kind.waits_for_people, bool)
    assert isinstance(kind.hides_after, frozenset)
    raw = {"id": "s", "type": name, "next": "t"}
    assert isinstance(kind.policy(make(raw), action_is_cheap=never_cheap), StepPolicy)
    assert isinstance(kind.summary(raw), str) and isinstance(kind.summary({"config": 3}), str)
    assert kind.edges(make(raw))[0] == ("next", "t")
    assert list(inspect.signature(kind.validate).parameters) == [
        "raw", "path", "errors", "function_exists"]


def test_an_unknown_name_is_a_clear_error():
    with pytest.raises(UnknownStepTypeError,
                       match="Unknown step type 'teleport'; registered: agent"):
        step_type("teleport")


def test_a_new_type_is_one_class_and_a_register_call():
    class EchoStep(StepType):
        name, description = "echo", "Hand the input on."

        def execute(self, step, runtime):
            return Outcome("completed", output=runtime.input, logs=runtime.logs)

    register(EchoStep)
    try:
        assert step_type("echo").execute(make({"id": "e", "type": "echo"}),
                                         FakeRuntime(input=7)).output == 7
        with pytest.raises(ValueError, match="already registered"):
            register(EchoStep)
    finally:
        del STEP_TYPES["echo"]


def test_the_step_types_never_import_the_layers_above_them():
    for path in STEPS_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom | ast.Import):
                names = [node.module] if isinstance(node, ast.ImportFrom) else [
                    a.name for a in node.names]
                assert not any(n and n.startswith(FORBIDDEN) for n in names), (path.name, names)


# Validation ------------------------------------------------------------------------------

def test_validation_messages_per_type():
    assert problems({"id": "a", "type": "function"}) == {
        "steps[0].function": ["A function step names its function, or carries one inline "
                              "as {name, action, config}."]}
    assert problems({"id": "a", "type": "function", "function": "nope",
                     "config": {"timeout": 0}}) == {
        "steps[0].function": ["Unknown function 'nope'."],
        "steps[0].config.timeout": ["timeout must be a whole number from 1 to 3600000."]}
    assert problems({"id": "c", "type": "condition", "condition": "true"}) == {
        "steps[0].next": ["A condition needs next (when true) or config.else."]}
    assert problems({"id": "l", "type": "loop", "config": {"items": "input.xs"}}) == {
        "steps[0].next": ["A loop needs next: the first step of its body."]}
    assert problems({"id": "h", "type": "human", "config": {"reviewers": ["ann"]}}) == {}
    assert problems({"id": "h", "type": "human", "config": {"approvers": [1]}}) == {
        "steps[0].config.approvers": ["List at least one approver (user, email or group:<name>)."]}
    assert problems({"id": "g", "type": "agent", "config": {}}) == {
        "steps[0].config.agentRole": ["An agent step names its agent in config.agentRole."]}
    assert problems({"id": "g", "type": "agent", "config": {
        "agentRole": "triage", "tools": ["test.record", "nope"], "maxIterations": 0}}) == {
        "steps[0].config.tools[1]": ["Unknown function 'nope'."],
        "steps[0].config.maxIterations": ["maxIterations must be a whole number from 1 to 100."]}
    errors = DefinitionErrors()
    step_type("agent").validate_references(
        {"config": {"agentRole": "triage"}}, "steps[0]", errors, lambda model, key: False)
    assert errors.fields == {"steps[0].config.agentRole": ["Unknown agent 'triage'."]}
    assert problems({"id": "p", "type": "parallel", "next": ["a", "b"]}) == {}


def test_the_unknown_type_message_lists_the_registry():
    fields = validate_definition({"steps": [{"id": "a", "type": "teleport"}]},
                                 function_exists=lambda n: True)
    assert fields["steps[0].type"] == ["Unknown step type 'teleport'; use one of agent, "
                                       "condition, function, human, loop, parallel, process, "
                                       "wait, waitForEvent."]
    fields = validate_definition({"steps": [{"id": "a", "type": ["x"]}]},
                                 function_exists=lambda n: True)
    assert "steps[0].type" in fields


def test_only_function_steps_have_their_params_checked():
    def check_params(name, params):
        return {"url": [f"{name} needs a url"]}

    steps = [{"id": "a", "type": "function", "function": "f", "config": {"params": {}},
              "next": "b"},
             {"id": "b", "type": "parallel", "config": {"params": {}}}]
    fields = validate_definition({"steps": steps}, function_exists=lambda n: True,
                                 check_params=check_params)
    assert fields == {"steps[0].config.params.url": ["f needs a url"]}


# Edges and bodies ------------------------------------------------------------------------

def test_edges_follow_every_branch_key_whatever_the_type():
    step = make({"id": "f", "type": "function", "next": ["a", "b"],
                 "config": {"onError": "e", "else": "x", "then": ""}})
    assert step_type("function").edges(step) == [("next", "a"), ("next", "b"), ("else", "x"),
                                                 ("onError", "e")]


def test_only_the_loop_has_a_body():
    assert [n for n in NAMES if step_type(n).has_body] == ["loop"]
    graph = build_graph({"steps": [
        {"id": "each", "type": "loop", "next": "body", "config": {"items": "[1]", "then": "end"}},
        {"id": "body", "type": "function", "function": "f", "next": "each"},
        {"id": "end", "type": "parallel"}]})
    assert graph.loop_bodies == {"each": {"body"}}
    assert graph.reach["each"] == {"body", "end"}


# Execution -------------------------------------------------------------------------------

def test_function_and_agent_ask_the_runtime():
    runtime = FakeRuntime(input={"x": 1}, answer={"ok": True})
    step = make({"id": "f", "type": "function", "function": "f"})
    assert step_type("function").execute(step, runtime).output == {"ok": True}
    agent = make({"id": "g", "type": "agent", "config": {"agentRole": "Sort it"}})
    outcome = step_type("agent").execute(agent, runtime)
    assert outcome.kind == "completed" and outcome.logs is runtime.logs
    assert runtime.calls == [("function", "f"), ("agent", "Sort it", {"x": 1})]


def test_condition_picks_next_or_else_and_logs_it():
    step = make({"id": "c", "type": "condition", "condition": "input.n > 2", "next": "big",
                 "config": {"else": "small"}})
    runtime = FakeRuntime(input={"n": 1}, scope={"input": {"n": 1}})
    outcome = step_type("condition").execute(step, runtime)
    assert outcome.targets == ["small"] and outcome.state == {"value": False}
    assert outcome.output == {"n": 1}
    assert runtime.logs == [{"message": "input.n > 2 → false"}]


def test_loop_keeps_at_most_max_iterations_and_refuses_a_non_list():
    step = make({"id": "l", "type": "loop", "next": "b",
                 "config": {"items": "input.xs", "maxIterations": 2}})
    outcome = step_type("loop").execute(step, FakeRuntime(scope={"input": {"xs": [1, 2, 3]}}))
    assert outcome.kind == "loop"
    assert outcome.state == {"items": [1, 2], "results": [], "total": 3, "truncated": True}
    with pytest.raises(StepFailedError, match="must give a list, got int"):
        step_type("loop").execute(step, FakeRuntime(scope={"input": {"xs": 4}}))


def test_human_waits_with_a_deadline():
    step = make({"id": "h", "type": "human",
                 "config": {"reviewers": ["ann"], "timeout": 60_000}})
    outcome = step_type("human").execute(step, FakeRuntime())
    assert outcome.kind == "waiting" and outcome.state["approvers"] == ["ann"]
    assert outcome.state["requiredApprovals"] == 1 and outcome.state["deadline"]
    assert step_type("parallel").execute(make({"id": "p", "type": "parallel"}),
                                         FakeRuntime(input=5)).output == 5


# Policy ----------------------------------------------------------------------------------

def test_policy_per_type():
    fn = make({"id": "f", "type": "function", "function": "transform",
               "config": {"retries": 2, "timeout": 1500}})
    assert step_type("function").policy(fn, action_is_cheap=lambda n: True) == StepPolicy(
        cheap=False, timeout_seconds=2, max_attempts=3, time_limit_ms=1500)
    quick = make({"id": "f", "type": "function", "function": "transform"})
    assert step_type("function").policy(quick, action_is_cheap=lambda n: n == "transform").cheap
    assert not step_type("function").policy(quick, action_is_cheap=never_cheap).cheap
    human = make({"id": "h", "type": "human", "config": {"timeout": 60_000, "retries": 3}})
    assert step_type("human").policy(human, action_is_cheap=never_cheap) == StepPolicy(
        cheap=False, timeout_seconds=None, max_attempts=1, time_limit_ms=None)
    for name in ("condition", "parallel"):
        assert step_type(name).policy(make({"id": "x", "type": name}),
                                      action_is_cheap=never_cheap).cheap
    agent = make({"id": "g", "type": "agent", "config": {"timeout": 30_000}})
    assert step_type("agent").policy(agent, action_is_cheap=never_cheap) == StepPolicy(
        cheap=False, timeout_seconds=31, max_attempts=1, time_limit_ms=30_000)


def test_only_the_human_step_waits_for_people():
    assert [n for n in NAMES if step_type(n).waits_for_people] == ["human"]


# Dry run ---------------------------------------------------------------------------------

def dry(raw: dict, scope: dict | None = None, unknown=frozenset()) -> tuple[dict, list]:
    entry: dict = {}
    targets = step_type(raw["type"]).dry_run(make(raw), entry, scope or {}, unknown)
    return entry, targets


def test_dry_run_of_a_condition():
    raw = {"id": "c", "type": "condition", "condition": "entity.n > 1", "next": "yes",
           "config": {"else": "no", "onError": "oops"}}
    assert dry(raw, {"entity": {"n": 2}}) == (
        {"condition": "entity.n > 1", "value": True, "evaluation": "true"}, [("yes", True)])
    assert dry(raw, unknown=frozenset({"entity"})) == (
        {"condition": "entity.n > 1", "value": None, "evaluation": "unknown"},
        [("yes", False), ("no", False)])


def test_dry_run_of_a_loop_and_the_names_hidden_after_it():
    raw = {"id": "l", "type": "loop", "next": "body",
           "config": {"items": "entity.xs", "then": "end", "onError": "oops"}}
    assert dry(raw, {"entity": {"xs": [1, 2]}}) == (
        {"items": 2}, [("body", True), ("end", True), ("oops", False)])
    assert dry(raw, {"entity": {"xs": []}}) == ({"items": 0}, [("end", True), ("oops", False)])
    assert dry(raw, unknown=frozenset({"entity"})) == (
        {"items": None}, [("body", False), ("end", True), ("oops", False)])
    assert step_type("loop").hides_after == {"result", "steps", "item", "index"}
    assert not step_type("condition").hides_after and not step_type("parallel").hides_after


def test_dry_run_of_function_and_human_steps():
    fn = {"id": "f", "type": "function", "function": "email.send", "next": "n",
          "config": {"onError": "e"}}
    assert dry(fn) == ({"function": "email.send"}, [("n", True), ("e", False)])
    human = {"id": "h", "type": "human", "next": "n",
             "config": {"approvers": ["ann"], "onTimeout": "late"}}
    assert dry(human) == ({"approvers": ["ann"]}, [("n", True), ("late", False)])


# Editor summary --------------------------------------------------------------------------

def test_summary_per_type():
    assert step_type("function").summary(
        {"function": "transform", "config": {"retries": 2}}) == "transform · retries 2"
    assert step_type("function").summary({}) == "?"
    assert step_type("condition").summary({"condition": "input.ok"}) == "input.ok"
    assert step_type("loop").summary({"config": {"items": "input.xs"}}) == "for each in input.xs"
    assert step_type("human").summary(
        {"config": {"approvers": ["ann", "group:ops"], "requiredApprovals": 2,
                    "timeout": 172_800_000}}) == "2 of ann, group:ops · timeout 2 d"
    assert step_type("human").summary({"config": []}) == "1 of ?"
    assert step_type("agent").summary({"config": {"agentRole": "x" * 200}}) == "x" * 120
    assert step_type("parallel").summary({"next": ["a", "b"]}) == ""


def test_the_engine_asks_the_function_registry_which_actions_are_cheap():
    from automation.store.policy import policy as step_policy

    transform = make({"id": "t", "type": "function", "function": "transform"})
    send = make({"id": "s", "type": "function", "function": "email.send"})
    assert step_policy(transform).cheap and not step_policy(send).cheap
    assert not step_policy(make({"id": "u", "type": "function", "function": "no-such"})).cheap


def test_a_process_step_starts_its_child_and_waits_or_takes_an_ended_childs_outcome():
    class Starter(FakeRuntime):
        def start_process(self, step, *, input, entity):
            self.calls.append(("process", input, entity))
            return {"id": "c-1", "process": "child", "version": 2, **self.answer}

    raw = {"id": "call", "type": "process",
           "config": {"process": "child", "input": {"n": "input.n + 1"}, "entity": "input.e"}}
    runtime = Starter(scope={"input": {"n": 1, "e": "x"}}, answer={"status": "pending"})
    outcome = step_type("process").execute(make(raw), runtime)
    assert (outcome.kind, outcome.state) == ("waiting", {"childRun": "c-1"})
    assert runtime.calls == [("process", {"n": 2}, "x")]
    ended = Starter(scope={"input": {"n": 1, "e": "x"}},
                    answer={"status": "completed", "result": {"ok": 1}})
    assert step_type("process").execute(make(raw), ended).output == {"ok": 1}
    failed = Starter(scope={"input": {"n": 1, "e": "x"}},
                     answer={"status": "failed", "error": {"message": "no"}})
    outcome = step_type("process").execute(make(raw), failed)
    assert outcome.kind == "failed" and outcome.error["code"] == "subprocess_failed"
    assert problems({"id": "p", "type": "process", "config": {"process": True}}) == {
        "steps[0].config.process": ["A process step names the process to run in config.process "
                                    "(its id or its slug)."]}
