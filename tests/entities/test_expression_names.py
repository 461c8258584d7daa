"""validate_expression's list of the functions CEL provides (entities/expressions) matches
the engine: each listed one really runs, and a call to anything else is refused when an
expression is saved, naming the function (docs/user-guide/expressions.md#checked-when-saved)."""

import pytest

from entities.exceptions import ExpressionError
from entities.expressions import CEL_FUNCTIONS, evaluate, validate_expression

# One expression per listed function, each evaluating to true.
USES = {
    "size": "size([1, 2]) == 2",
    "contains": "'abc'.contains('b')",
    "startsWith": "'abc'.startsWith('a')",
    "endsWith": "'abc'.endsWith('c')",
    "matches": "'abc'.matches('^a')",
    "has": "has(input.x)",
    "all": "[1, 2].all(n, n > 0)",
    "exists": "[1, 2].exists(n, n > 1)",
    "exists_one": "[1, 2].exists_one(n, n > 1)",
    "existsOne": "[1, 2].existsOne(n, n > 1)",
    "map": "[1, 2].map(n, n * 2) == [2, 4]",
    "filter": "[1, 2].filter(n, n > 1) == [2]",
    "int": "int('3') == 3",
    "uint": "uint(3) == 3u",
    "double": "double(1) == 1.0",
    "string": "string(1) == '1'",
    "bytes": "bytes('a') == b'a'",
    "timestamp": "timestamp('2026-01-02T03:04:05Z') > timestamp('2025-01-01T00:00:00Z')",
    "duration": "duration('60s') == duration('1m')",
    "type": "type(1) == int",
    "dyn": "dyn(1) == 1",
    "getFullYear": "timestamp('2026-01-02T03:04:05Z').getFullYear() == 2026",
    "getMonth": "timestamp('2026-01-02T03:04:05Z').getMonth() == 0",
    "getDate": "timestamp('2026-01-02T03:04:05Z').getDate() == 2",
    "getDayOfMonth": "timestamp('2026-01-02T03:04:05Z').getDayOfMonth() == 1",
    "getDayOfWeek": "timestamp('2026-01-02T03:04:05Z').getDayOfWeek() == 5",
    "getDayOfYear": "timestamp('2026-01-02T03:04:05Z').getDayOfYear() == 1",
    "getHours": "timestamp('2026-01-02T03:04:05Z').getHours() == 3",
    "getMinutes": "timestamp('2026-01-02T03:04:05Z').getMinutes() == 4",
    "getSeconds": "timestamp('2026-01-02T03:04:05Z').getSeconds() == 5",
    "getMilliseconds": "timestamp('2026-01-02T03:04:05Z').getMilliseconds() == 0",
    "of": "optional.of(1).hasValue()",
    "ofNonZeroValue": "!optional.ofNonZeroValue(0).hasValue()",
    "none": "!optional.none().hasValue()",
    "or": "optional.none().or(optional.of(2)).value() == 2",
    "orValue": "optional.none().orValue(3) == 3",
    "hasValue": "optional.of(1).hasValue()",
    "value": "optional.of(4).value() == 4",
}


def test_every_listed_function_is_exercised():
    assert set(USES) == set(CEL_FUNCTIONS)


@pytest.mark.parametrize("name", sorted(USES))
def test_each_listed_function_runs_and_is_accepted(name):
    validate_expression(USES[name], variables={"input"})
    assert evaluate(USES[name], {"input": {"x": 1}}) is True


@pytest.mark.parametrize(("source", "named"), [
    ("__import__('os').system('id')", "'__import__', 'system'"),
    ("input.name.upper() == 'A'", "'upper'"),
    ("max(1, 2) == 2", "'max'"),
    ("input.name.lowerAscii() == 'a'", "'lowerAscii'"),
])
def test_a_call_to_anything_else_is_refused_naming_it(source, named):
    with pytest.raises(ExpressionError, match=f"unknown function {named}"):
        validate_expression(source)


def test_names_outside_the_place_are_refused_when_asked():
    validate_expression("result.ok", variables={"result"})
    validate_expression("type(1) == int && optional.of(1).hasValue()", variables=set())
    with pytest.raises(ExpressionError, match="unknown variable 'result'.*in a trigger"):
        validate_expression("result.ok", variables={"event"}, where="in a trigger condition")
