"""Expressions: the JavaScript-like seed forms, error messages, and every static bound."""

import datetime
import decimal
import enum
import re
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from entities.exceptions import (
    ExpressionError,
    ExpressionEvaluationError,
    ExpressionSyntaxError,
    ExpressionTooComplexError,
)
from entities.expressions import (
    bounds,
    compile_expression,
    evaluate,
    evaluate_bool,
    expression_variables,
    validate_expression,
)

SCOPE = {
    "result": {"status": "succeeded", "total": 120, "lines": [{"sku": "A", "qty": 2}]},
    "customer": {"lifetimeValue": 25000, "purchases": 7, "tags": ["vip", "eu"]},
    "entity": {"email": "ada@example.com", "region": "eu", "data": {"address": {"city": "Oslo"}}},
    "input": {"items": [{"sku": "A", "qty": 2}, {"sku": "B", "qty": 0}], "note": "a === b"},
}


def literal(count: int) -> str:
    return "[" + ",".join(str(i % 10) for i in range(count)) + "]"


# --- the forms admins write ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('result.status === "succeeded"', True),
        ('result.status !== "failed"', True),
        ("result.status !== 'succeeded'", False),
        ("customer.lifetimeValue > 10000 && customer.purchases > 5", True),
        ("customer.purchases > 100 || customer.lifetimeValue > 10000", True),
        ('entity.data.address.city === "Oslo"', True),
        ('"vip" in customer.tags', True),
        ('entity.region in ["us", "ca"]', False),
        ("size(customer.tags) == 2 && customer.tags.size() === 2", True),
        ("has(entity.email)", True),
        ("has(entity.phone)", False),
        ('input.items.exists(i, i.sku === "B")', True),
        ("input.items.all(i, i.qty > 0)", False),
        ("input.items.filter(i, i.qty > 0).map(i, i.sku)", ["A"]),
        ("result.total > 100 ? 'big' : 'small'", "big"),
        ("result.lines[0].qty * 2", 4),
        ("// comments are allowed ' \" ===\nresult.total === 120", True),
    ],
)
def test_seed_forms_evaluate(source, expected):
    assert evaluate(source, SCOPE) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('"a === b"', "a === b"),
        ("'x !== y'", "x !== y"),
        ("r'a===b'", "a===b"),
        ('"""a === b"""', "a === b"),
        ('"say \\" === \\""', 'say " === "'),
        ("'it\\'s === ' + \"ok\"", "it's === ok"),
    ],
)
def test_strict_operators_inside_string_literals_are_left_alone(source, expected):
    assert evaluate(source, {}) == expected


def test_strict_equality_and_string_literal_together():
    assert evaluate_bool('input.note === "a === b"', SCOPE) is True


def test_evaluate_bool_refuses_non_bool():
    with pytest.raises(ExpressionEvaluationError, match="condition must be true or false, got int"):
        evaluate_bool("result.total", SCOPE)


def test_expression_variables_lists_top_level_names_only():
    source = "input.items.exists(i, i.qty > parameters.min) && has(entity.email) && index > 0"
    assert expression_variables(source) == {"input", "parameters", "entity", "index"}


def test_scope_values_cel_cannot_take_are_converted():
    class Colour(enum.Enum):
        RED = "red"

    scope = {
        "item": {
            "price": decimal.Decimal("12.50"),
            "when": datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC),
            "day": datetime.date(2024, 5, 1),
            "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
            "pair": (1, 2),
            "labels": {"b", "a"},
            "colour": Colour.RED,
            "huge": 2**70,
        }
    }
    assert evaluate("item.price", scope) == 12.5
    assert evaluate("item.when", scope) == "2024-05-01T12:00:00+00:00"
    assert evaluate("item.day", scope) == "2024-05-01"
    assert evaluate("item.id", scope) == "12345678-1234-5678-1234-567812345678"
    assert evaluate("item.pair", scope) == [1, 2]
    assert evaluate("item.labels", scope) == ["a", "b"]
    assert evaluate("item.colour == 'red'", scope) is True
    assert evaluate("item.huge > 1.0", scope) is True


def test_unconvertible_scope_value_names_its_path():
    with pytest.raises(ExpressionEvaluationError, match=r"type object .*at input\.rows\.1"):
        evaluate("size(input.rows) > 0", {"input": {"rows": [1, object()]}})


# --- errors ---------------------------------------------------------------------------------


def test_missing_field_names_the_field_and_the_expression():
    with pytest.raises(ExpressionEvaluationError) as caught:
        evaluate("result.total > 0", {"result": {"status": "succeeded"}})
    assert str(caught.value) == "no field 'total' in scope (expression: result.total > 0)"


def test_scope_name_not_passed_is_not_there():
    with pytest.raises(ExpressionEvaluationError, match="no variable 'result' in scope"):
        evaluate("result.total > 0", {"entity": {}})


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("1 / 0", "division by zero"),
        ("result.total + 0.5", "No such overload.*double"),
        ("0.5 + result.total", "float \\+ int"),
        ("min([1, 2])", "unknown function 'min'"),
        ("result.lines[3]", "index out of bounds"),
    ],
)
def test_runtime_failures_become_evaluation_errors(source, fragment):
    with pytest.raises(ExpressionEvaluationError, match=fragment):
        evaluate(source, SCOPE)


def test_syntax_error_says_what_and_where():
    with pytest.raises(ExpressionSyntaxError) as caught:
        validate_expression("result.total >\n  (1 +")
    message = str(caught.value)
    assert message.startswith("syntax error at line 2, column 7: unexpected end of expression")
    assert message.endswith("\n|   (1 +\n| ......^")


def test_syntax_error_column_counts_the_source_as_written():
    with pytest.raises(ExpressionSyntaxError) as caught:
        validate_expression("a === b && = c")
    assert str(caught.value) == (
        "syntax error at line 1, column 12: unrecognised text '= '\n"
        "| a === b && = c\n"
        "| ...........^"
    )


@pytest.mark.parametrize("source", ["", "   ", "\n\t", "// only a comment"])
def test_empty_source_is_refused(source):
    with pytest.raises(ExpressionSyntaxError):
        validate_expression(source)


# --- bounds ---------------------------------------------------------------------------------


def test_three_nested_maps_over_a_200_element_literal_are_refused_before_running():
    big = literal(200)
    source = f"{big}.map(x, {big}.map(y, {big}.map(z, x + y + z)))"
    with pytest.raises(ExpressionTooComplexError) as caught:
        validate_expression(source)
    assert str(caught.value).startswith("comprehensions nest 3 deep; at most 2 allowed")
    # evaluate goes through the same gate, so the engine never sees it
    with pytest.raises(ExpressionTooComplexError):
        evaluate(source, {})


def test_two_nested_comprehensions_are_allowed_and_three_are_not():
    assert evaluate("[1, 2].map(x, [3, 4].map(y, x * y))", {}) == [[3, 4], [6, 8]]
    with pytest.raises(ExpressionTooComplexError, match="nest 3 deep"):
        validate_expression("[1].all(x, [2].all(y, [3].exists(z, x < z)))")


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("1 + " * 500 + "1", "characters long; at most 2000 allowed"),
        ("(" * 33 + "1" + ")" * 33, "nest 33 deep; at most 32 allowed"),
        (" && ".join(["input.items.exists(i, true)"] * 9), "9 comprehensions; at most 8 allowed"),
        (literal(101) + ".size() > 0", "101 elements; at most 100 allowed"),
        ("{" + ", ".join(f"'k{i}': {i}" for i in range(101)) + "}", "101 elements"),
        (" + ".join(["1"] * 34), "'+' is used 33 times; at most 32 allowed"),
        ("input.items.map(i, " + " + ".join(["i.qty"] * 18) + ")", "17 times inside comprehen"),
        ("(input.items + input.items).exists(i, true)", "walks is built with '+'"),
        ("[input.items + input.items].map(l, l.map(i, i))", "walks is built with '+'"),
        ("[1].map(z, input.items + input.items).exists(l, l.all(i, true))", "built with '+'"),
        ("input.items.exists(i, i.sku.matches('^A'))", "matches() inside map/filter"),
        (" || ".join(["entity.email.matches('a')"] * 5), "called 5 times; at most 4 allowed"),
    ],
)
def test_each_bound_is_refused_with_its_name(source, fragment):
    with pytest.raises(ExpressionTooComplexError, match=re.escape(fragment)):
        validate_expression(source)


@pytest.mark.parametrize(
    "source",
    [
        "(" * 32 + "1" + ")" * 32,
        literal(100) + ".size() == 100",
        " && ".join(["input.items.exists(i, true)"] * 8),
        "input.items.map(i, i.qty + 1).exists(q, q > 2)",
        "input.items[size(input.items) - 1 + 0].sku == 'B'",
        "entity.email.matches('^[a-z]+@example[.]com$')",
    ],
)
def test_expressions_at_the_bounds_are_allowed(source):
    validate_expression(source)
    evaluate(source, SCOPE)


def test_bounds_inside_strings_and_comments_do_not_count():
    hidden = "input.items.map(a, a.map(b, b.map(c, c)))"
    assert evaluate(f"'{hidden}' != ''", SCOPE) is True
    assert evaluate(f"true // {hidden}", SCOPE) is True


def test_map_building_big_results_from_literals_is_refused_when_saved():
    # each inner map result is a 100-element list, copied again on every iteration
    source = f"{literal(100)}.map(x, {literal(100)}.map(y, {literal(100)})).size()"
    with pytest.raises(ExpressionTooComplexError, match="steps over the literals alone"):
        validate_expression(source)
    # the same loops producing numbers are cheap and allowed
    assert evaluate(f"{literal(100)}.map(x, {literal(100)}.map(y, x + y)).size()", {}) == 100


def test_map_returning_a_big_outside_value_is_refused_before_running():
    source = "a.map(x, lookup).size()"
    assert evaluate(source, {"a": list(range(30)), "lookup": list(range(10))}) == 30
    with pytest.raises(ExpressionEvaluationError, match="too much data"):
        evaluate(source, {"a": list(range(30)), "lookup": list(range(10_000))})


def test_loops_over_too_much_data_are_refused_before_running():
    rows = [{f"f{j}": j for j in range(50)} for _ in range(500)]
    with pytest.raises(ExpressionEvaluationError, match="too much data for this expression"):
        evaluate("rows.filter(r, r.f1 == 1).size()", {"rows": rows})
    # a linear loop over the same data is fine
    assert evaluate("rows.exists(r, r.f1 == 2)", {"rows": rows}) is False


def test_error_classes_share_the_expression_base():
    for error in (ExpressionSyntaxError, ExpressionTooComplexError, ExpressionEvaluationError):
        assert issubclass(error, ExpressionError)


# --- compile cache --------------------------------------------------------------------------


def test_compile_is_cached_by_source():
    source = "result.total > 99 && result.status === 'succeeded'"
    first = compile_expression(source)
    hits = compile_expression.cache_info().hits
    assert compile_expression(source) is first
    assert compile_expression.cache_info().hits == hits + 1
    assert compile_expression.cache_info().maxsize == 4096


# --- properties -----------------------------------------------------------------------------

SMALL_SCOPE = {
    "input": {"items": [1, 2, 3], "name": "ada", "flag": True, "nested": {"a": [1, 2]}},
    "item": 2,
    "index": 0,
}


def _check_never_crashes(source: str) -> None:
    try:
        validate_expression(source)
    except ExpressionError:
        return
    try:
        evaluate(source, SMALL_SCOPE)
    except ExpressionError:
        pass


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=120))
def test_random_text_only_ever_raises_expression_errors(source):
    _check_never_crashes(source)


FRAGMENTS = st.sampled_from(
    ["input", "item", "index", ".", "items", "name", "nested", "a", "(", ")", "[", "]",
     "{", "}", ",", ":", "?", "+", "-", "*", "/", "%", "==", "===", "!==", "!", "&&",
     "||", "<", ">=", " in ", "1", "2.5", "3u", "'s'", '"==="', "r'x'", "true", "null",
     "size(", "has(", ".map(x, ", ".filter(x, ", ".exists(x, ", ".all(y, ", "x", "y",
     ".matches('a')", "//", "\n", " "]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(FRAGMENTS, max_size=30).map("".join))
def test_token_soup_only_ever_raises_expression_errors(source):
    _check_never_crashes(source)


def _expressions():
    leaves = st.sampled_from(
        ["1", "2", "0", "'ab'", "true", "false", "input.items", "input.name", "item",
         "index", "input.nested.a", "x", "y", "[1, 2, 3]", "[]", "{'k': 1}", "null"]
    )

    def extend(inner):
        return st.one_of(
            st.tuples(inner, st.sampled_from([" + ", " - ", " * ", " === ", " !== ", " < ",
                                              " && ", " || ", " in "]), inner)
            .map(lambda t: f"({t[0]}{t[1]}{t[2]})"),
            st.tuples(inner, st.sampled_from(["map", "filter", "exists", "all", "exists_one"]),
                      st.sampled_from(["x", "y"]), inner)
            .map(lambda t: f"{t[0]}.{t[1]}({t[2]}, {t[3]})"),
            st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} ? {t[1]} : {t[2]})"),
            inner.map(lambda e: f"size({e})"),
            st.lists(inner, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
        )

    return st.recursive(leaves, extend, max_leaves=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_expressions())
def test_generated_expressions_validate_then_finish(source):
    """Whatever passes validation runs to an answer or an ExpressionError on a small scope."""
    _check_never_crashes(source)


def test_tokenizer_keeps_columns_when_translating():
    source = "a === 'x === y' && b !== 2"
    translated = bounds.translate(source, bounds.tokenize(source))
    assert translated == "a ==  'x === y' && b !=  2"
    assert len(translated) == len(source)
