"""Hostile expressions: walks toward Python internals, comprehensions over big literals,
huge strings and lists, deep nesting, regex blow-ups. Each is refused when it is saved
(a process definition through the API or process_save, a requirement through
full_clean) or, when its cost depends on the data, stopped before it runs: no request
hangs and no worker is lost. The engine's own bounds are unit-tested in
tests/entities/test_expressions.py; here they are driven through the places users type
expressions, with a clock on every call."""

import json
import time

import pytest
from django.core.exceptions import ValidationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automation.exceptions import DefinitionInvalidError
from automation.models import Run
from automation.services.processes import process_save
from automation.services.runs import run_start
from entities.exceptions import ExpressionError
from entities.expressions import evaluate, validate_expression
from entities.models import Requirement, Status
from tests.reliability.support import assert_error, flow_type

LIST_200 = "[" + ", ".join(str(i) for i in range(200)) + "]"
LIST_100 = "[" + ", ".join(str(i) for i in range(100)) + "]"
LIST_60 = "[" + ", ".join(str(i) for i in range(60)) + "]"
HOSTILE = {
    "class": "input.__class__",
    "globals": "input.__class__.__init__.__globals__",
    "subclasses": "''.__class__.__mro__[1].__subclasses__()",
    "dict": "input.__dict__",
    "builtins": "__builtins__.open('/etc/passwd')",
    "import": "__import__('os').system('id')",
    "getattr": "getattr(input, '__class__')",
    "index walk": "input['__class__']['__globals__']",
    "three maps of 200": f"{LIST_200}.map(x, {LIST_200}.map(y, {LIST_200}.map(z, x + y + z)))",
    "three maps of 60": f"{LIST_60}.map(x, {LIST_60}.map(y, {LIST_60}.map(z, x + y + z)))",
    "two maps building lists": f"{LIST_100}.map(x, {LIST_100}.map(y, {LIST_100}))",
    "exists over 200": f"{LIST_200}.exists(x, {LIST_200}.exists(y, x == y + 1000))",
    "string doubling": "'" + "x" * 60 + "'" + " + '" + "x" * 60 + "'" * 1 + "".join(
        f" + '{'y' * 40}'" for _ in range(40)),
    "list doubling": " + ".join([LIST_100] * 20),
    "string in loop": "input.items.map(i, " + " + ".join(["'xxxxxxxxxx'"] * 20) + ")",
    "deep parentheses": "(" * 1000 + "1" + ")" * 1000,
    "deep lists": "[" * 1000 + "]" * 1000,
    "deep maps": "{'a': " * 200 + "1" + "}" * 200,
    "deep ternary": "true ? " * 300 + "1" + " : 0" * 300,
    "deep negation": "!" * 5000 + "true",
    "long sum": " + ".join(["1"] * 5000),
    "regex nested quantifier": "'" + "a" * 40 + "!'.matches('^(a+)+$')",
    "regex on input": "input.text.matches('(a|aa)+$') && input.text.matches('(a*)*b')",
    "many regexes": " || ".join(["input.text.matches('a')"] * 20),
    "regex in loop": "input.items.exists(i, string(i).matches('^(1+)+$'))",
    "huge literal string": "'" + "a" * 50_000 + "'",
    "unicode escapes": "'\\U0001F600' * 3",
    "size of product": f"size({LIST_200}.map(x, {LIST_200}))",
}
# Scope values for runs: big enough that data-dependent cost matters.
INPUT = {"items": list(range(3000)), "text": "a" * 100_000 + "!"}
SAVE_SECONDS, RUN_SECONDS = 2.0, 5.0


def clocked(call, limit: float):
    started = time.monotonic()
    try:
        return call()
    finally:
        assert time.monotonic() - started < limit, f"took over {limit}s"


def outcome(source: str) -> str:
    """'refused' when it may not be saved, else what evaluating it against INPUT gave."""
    try:
        clocked(lambda: validate_expression(source), SAVE_SECONDS)
    except ExpressionError:
        return "refused"
    try:
        value = clocked(lambda: evaluate(source, {"input": INPUT}), RUN_SECONDS)
    except ExpressionError:
        return "stopped"
    json.dumps(value)  # only plain JSON values ever come out
    return "value"


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_expressions_are_refused_or_stopped(name):
    assert outcome(HOSTILE[name]) in ("refused", "stopped", "value")


def test_walks_toward_python_internals_never_reach_a_python_object():
    for name in ("class", "globals", "subclasses", "dict", "builtins", "import", "getattr",
                 "index walk"):
        assert outcome(HOSTILE[name]) in ("refused", "stopped"), name


def test_expensive_comprehensions_are_refused_when_saved():
    for name in ("three maps of 200", "three maps of 60", "two maps building lists",
                 "exists over 200", "size of product", "deep parentheses", "deep lists",
                 "long sum", "many regexes", "huge literal string"):
        assert outcome(HOSTILE[name]) == "refused", name


def condition_process(slug: str, source: str):
    return process_save(slug=slug, name=slug, definition={"steps": [
        {"id": "check", "type": "condition", "condition": source, "next": "yes",
         "config": {"else": "no"}},
        {"id": "yes", "type": "function", "function": "noop"},
        {"id": "no", "type": "function", "function": "noop"}]})


@pytest.mark.django_db
def test_hostile_conditions_through_process_save_and_a_run(django_capture_on_commit_callbacks):
    """Refused when saved, or the run's step fails (or completes) within seconds."""
    results = {}
    for n, (name, source) in enumerate(HOSTILE.items()):
        try:
            process = clocked(lambda s=source, n=n: condition_process(f"hostile-{n}", s),
                              SAVE_SECONDS)
        except DefinitionInvalidError as exc:
            assert "steps[0].condition" in exc.fields, exc.fields
            results[name] = "refused"
            continue
        with django_capture_on_commit_callbacks(execute=True):
            run, _ = clocked(lambda p=process: run_start(process=p, trigger={"type": "manual"},
                                                         input=INPUT), RUN_SECONDS)
        run.refresh_from_db()
        assert run.status in (Run.Status.FAILED, Run.Status.COMPLETED), (name, run.status)
        if run.status == Run.Status.FAILED:
            assert run.error["step"] == "check", run.error
        json.dumps(run.result)
        results[name] = run.status
    assert results["globals"] == Run.Status.FAILED  # a missing field, not a Python object
    assert results["three maps of 200"] == "refused"


@pytest.mark.django_db
def test_hostile_requirements_are_refused_by_full_clean():
    entity_type = flow_type()
    status = Status.objects.get(entity_type=entity_type, key="received")
    refused = 0
    for name, source in HOSTILE.items():
        requirement = Requirement(entity_type=entity_type, status=status, name=name[:100],
                                  expression=source, message="m")
        try:
            clocked(requirement.full_clean, SAVE_SECONDS)
        except ValidationError as exc:
            assert "expression" in exc.message_dict, exc.message_dict
            refused += 1
        else:
            assert outcome(source) in ("stopped", "value"), name
    assert refused >= 15


@pytest.mark.django_db(transaction=True)
def test_hostile_definitions_through_the_api_are_422_within_seconds(api):
    for n, name in enumerate(("three maps of 200", "deep parentheses", "long sum",
                              "huge literal string", "many regexes")):
        source = HOSTILE[name]
        started = time.monotonic()
        condition = api.post("/api/workflow-definitions", {"name": f"c{n}", "steps": [
            {"id": "check", "type": "condition", "condition": source}]}, format="json")
        trigger = api.post("/api/workflow-definitions", {"name": f"t{n}", "steps": [
            {"id": "a", "type": "function", "function": "noop"}], "triggers": [
            {"type": "event", "config": {"eventType": "x.y"}, "condition": source}]},
            format="json")
        assert time.monotonic() - started < 2 * SAVE_SECONDS, name
        assert "steps[0].condition" in assert_error(condition, 422)["fields"], name
        assert "triggers[0].condition" in assert_error(trigger, 422)["fields"], name
    assert not Run.objects.exists()


# --- generated -------------------------------------------------------------------------

ATOMS = st.sampled_from([
    "input", "input.items", "input.text", "input.__class__", "input.__dict__['x']",
    "item.__globals__", "x", "y", "1", "'a'", "'" + "b" * 500 + "'", "[1, 2, 3]", LIST_100,
    "{'k': [1, 2]}", "null", "true", "size(input.items)", "__import__('os')",
])


def _expressions():
    def extend(inner):
        macros = st.sampled_from(["map", "filter", "exists", "all", "exists_one"])
        return st.one_of(
            st.tuples(inner, macros, st.sampled_from(["x", "y"]), inner).map(
                lambda t: f"{t[0]}.{t[1]}({t[2]}, {t[3]})"),
            st.tuples(inner, st.sampled_from([" + ", " * ", " == ", " && ", " in "]), inner).map(
                lambda t: f"({t[0]}{t[1]}{t[2]})"),
            st.tuples(inner, st.sampled_from(["'(a+)+$'", "'(a|aa)*b'", "'.*.*.*x'"])).map(
                lambda t: f"string({t[0]}).matches({t[1]})"),
            st.tuples(inner, st.integers(1, 60)).map(lambda t: "(" * t[1] + t[0] + ")" * t[1]),
            st.lists(inner, min_size=1, max_size=5).map(lambda xs: "[" + ", ".join(xs) + "]"),
            st.tuples(inner, st.sampled_from(["__class__", "__globals__", "__init__", "size"]))
            .map(lambda t: f"{t[0]}.{t[1]}"),
        )

    return st.recursive(ATOMS, extend, max_leaves=12)


@settings(max_examples=80, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(_expressions())
def test_generated_hostile_expressions_are_refused_or_finish_quickly(source):
    assert outcome(source) in ("refused", "stopped", "value")
