"""Admin-written expressions: conditions, trigger conditions, loop items, input mappings.

Expressions are CEL (Common Expression Language), with `===` and `!==` accepted as
`==` and `!=` so JavaScript habits work. They see only the scope dict the caller passes
(input, entity, event, result, steps, item, index, parameters, case); a name that was
not passed is simply not there.

Why the bounds are static: the CEL engine has no step, time or memory limit, a running
evaluation cannot be stopped from Python, and it holds the GIL while it runs. Three
nested comprehensions over a 200-element list literal ran for over a minute. So every
bound that depends only on the expression (length, bracket depth, comprehension depth
and count, literal sizes, `+` inside loops, `matches` use) is checked from the source
text, by `validate_expression` when an expression is saved and again before it is
compiled; nothing is evaluated to decide it. One cost depends on the data: the engine's
`map`/`filter` copy their partial result on every iteration, so they cost about
n * (size of the results). That is estimated on the literals alone when an expression
is saved, and on the converted scope by `evaluate` before anything runs. See
`entities.expressions.bounds`.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import re
import uuid
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import cel

from entities.exceptions import ExpressionEvaluationError, ExpressionSyntaxError
from entities.expressions import bounds

__all__ = ["CEL_FUNCTIONS", "PreparedScope", "compile_expression", "evaluate",
           "evaluate_bool",
           "expression_variables", "validate_expression"]

_POSITION = re.compile(r"<input>:(\d+):(\d+): (?:Syntax error: )?(.*)")
_PHRASES = (  # the engine's parser wording, in words an admin can act on
    (re.compile(r"^(?:mismatched|extraneous) input (.+?) expecting (.*)$"),
     r"unexpected \1; expected \2"),
    (re.compile(r"^no viable alternative at input (.*)$"), r"unexpected \1"),
    (re.compile(r"^token recognition error at: (.*)$"), r"unrecognised text \1"),
)
_UNDEFINED = re.compile(r"Undefined variable or function: '([^']*)'")
_INT64 = range(-(2**63), 2**63)
_PLAIN = (  # scope types the engine cannot take, and the JSON-ish value passed instead
    (decimal.Decimal, float),
    ((datetime.date, datetime.time), lambda value: value.isoformat()),
    (datetime.timedelta, lambda value: value.total_seconds()),
    (uuid.UUID, str),
    ((bytes, bytearray, memoryview), bytes),
)
_CEL_TYPE_NAMES = {
    bool: "bool", int: "int", float: "double", str: "string", bytes: "bytes",
    list: "list", dict: "map", type(None): "null",
    datetime.datetime: "timestamp", datetime.timedelta: "duration",
}


# The functions the engine provides (each one is exercised by
# tests/entities/test_expression_names.py, so an engine upgrade that drops one fails
# there). A call to anything else, `__import__('os')` say, parses but can only fail when
# it runs, so saving it is refused. Macros (has, all, exists, map, filter) are here too.
CEL_FUNCTIONS = frozenset({
    "size", "contains", "startsWith", "endsWith", "matches",
    "has", "all", "exists", "exists_one", "existsOne", "map", "filter",
    "int", "uint", "double", "string", "bytes", "timestamp", "duration", "type", "dyn",
    "getFullYear", "getMonth", "getDate", "getDayOfMonth", "getDayOfWeek", "getDayOfYear",
    "getHours", "getMinutes", "getSeconds", "getMilliseconds",
    "of", "ofNonZeroValue", "none", "or", "orValue", "hasValue", "value",
})
# Names that are CEL's own, not the scope's: type names (`type(x) == int`) and the
# `optional` namespace.
CEL_NAMES = frozenset({"int", "uint", "double", "string", "bytes", "bool", "list", "map",
                       "null_type", "type", "dyn", "timestamp", "duration", "optional"})
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def validate_expression(source: str, *, variables: frozenset[str] | set[str] | None = None,
                        where: str = "here") -> None:
    """Raise an ExpressionError if `source` may not be saved: a syntax error, a bound
    exceeded, a call to a function CEL does not provide, or (when `variables` is given)
    a name outside them, which the expression could never see `where` it runs."""
    program = compile_expression(source)
    unknown = sorted(name for name in program.functions()
                     if _IDENTIFIER.match(name) and name not in CEL_FUNCTIONS)
    if unknown:
        raise ExpressionSyntaxError(
            f"unknown function {', '.join(repr(n) for n in unknown)}: CEL provides no "
            f"such function")
    if variables is not None:
        unseen = sorted(set(bounds.analyse(source).variables) - set(variables) - CEL_NAMES)
        if unseen:
            raise ExpressionSyntaxError(
                f"unknown variable {', '.join(repr(n) for n in unseen)}: {where} an expression "
                f"sees {', '.join(sorted(variables))}")


@lru_cache(maxsize=4096)
def compile_expression(source: str) -> cel.Program:
    """Validate, translate `===`/`!==` and compile; the same source returns the same Program."""
    if not isinstance(source, str) or not source.strip():
        raise ExpressionSyntaxError("The expression is empty.")
    tokens = bounds.tokenize(source)
    bounds.check_size(source, tokens)
    try:
        program = cel.compile(bounds.translate(source, tokens))
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # the engine reports parse failures as ValueError (or a panic)
        raise _syntax_error(source, exc) from None
    engine_names = {*program.variables(), *(f for f in program.functions() if f[:1].isalpha())}
    if unseen := bounds.unexplained(bounds.analyse(source), engine_names):
        raise ExpressionSyntaxError(  # the tokenizer and the engine disagree: refuse, never guess
            f"The expression could not be analysed (unexpected names: {', '.join(sorted(unseen))})."
        )
    return program


def expression_variables(source: str) -> set[str]:
    """Top-level names the expression reads (`input`, `entity`, ...), without loop variables."""
    compile_expression(source)
    return set(bounds.analyse(source).variables)


def evaluate(source: str, scope: dict) -> Any:
    """Evaluate `source` against `scope` and return the plain Python result."""
    program = compile_expression(source)
    shape = bounds.analyse(source)
    context, converter = _context(scope, shape.variables | set(program.variables()))
    if shape.loops:
        work = bounds.loop_work(
            shape, converter.largest, converter.weight,
            lambda path: _weigh_path(context, path, fallback=converter.weight),
        )
        if work > bounds.MAX_LOOP_WORK:
            raise ExpressionEvaluationError(
                f"too much data for this expression's comprehensions: about {work} steps "
                f"(at most {bounds.MAX_LOOP_WORK}); the largest list or map in scope has "
                f"{converter.largest} items (expression: {_clip(source)})"
            )
    try:
        result = program.execute(
            scope.engine_context(context) if isinstance(scope, PreparedScope) else context)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # pyo3 panics are BaseException, not Exception
        raise _evaluation_error(source, program, exc) from None
    if isinstance(result, cel.OptionalValue):
        result = result.value() if result.has_value() else None
    return result


def evaluate_bool(source: str, scope: dict) -> bool:
    """Evaluate a condition; anything but true or false is an ExpressionEvaluationError."""
    result = evaluate(source, scope)
    if not isinstance(result, bool):
        kind = _CEL_TYPE_NAMES.get(type(result), type(result).__name__)
        raise ExpressionEvaluationError(
            f"condition must be true or false, got {kind} (expression: {_clip(source)})"
        )
    return result


def _clip(source: str, limit: int = 200) -> str:
    source = " ".join(source.split())
    return source if len(source) <= limit else source[: limit - 1] + "…"


def _syntax_error(source: str, exc: BaseException) -> ExpressionSyntaxError:
    match = _POSITION.search(str(exc))
    if match is None:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return ExpressionSyntaxError(f"syntax error: {first}")
    line, column = int(match.group(1)), int(match.group(2))
    what = match.group(3).replace("'<EOF>'", "end of expression")
    for pattern, replacement in _PHRASES:
        what = pattern.sub(replacement, what)
    lines = source.splitlines() or [""]
    text = lines[line - 1] if line <= len(lines) else ""
    return ExpressionSyntaxError(
        f"syntax error at line {line}, column {column}: {what}\n| {text}\n| {'.' * (column - 1)}^"
    )


def _evaluation_error(source: str, program: cel.Program, exc: BaseException) -> Exception:
    where = f" (expression: {_clip(source)})"
    if isinstance(exc, KeyError):
        key = exc.args[0] if exc.args else "?"
        return ExpressionEvaluationError(f"no field {key!r} in scope{where}")
    text = str(exc).strip()
    if match := _UNDEFINED.search(text):
        name = match.group(1)
        if name in program.functions():
            return ExpressionEvaluationError(f"unknown function {name!r}{where}")
        return ExpressionEvaluationError(f"no variable {name!r} in scope{where}")
    if isinstance(exc, ZeroDivisionError):
        return ExpressionEvaluationError(f"division by zero{where}")
    first = text.splitlines()[0] if text else type(exc).__name__
    first = first.split(". ")[0].rstrip(".:")
    if "coerce" in text:
        first += " (CEL never mixes int and double by itself: write 1.0, or use double(x))"
    return ExpressionEvaluationError(f"{first}{where}")


class PreparedScope(dict):
    """A scope many expressions are evaluated against (explain checks every trigger of a
    type against one event): each value is converted for the engine once, when the
    first expression reads it, instead of once per expression."""

    def __init__(self, scope: dict) -> None:
        super().__init__(scope)
        self._converted: dict[str, tuple[Any, int, int]] = {}
        self._contexts: dict[frozenset, cel.Context] = {}

    def engine_context(self, context: dict) -> cel.Context:
        """The engine's own context for these converted values, built once per set of
        names: handing the engine a dict makes it convert the dict on every call, which
        costs a hundred times the evaluation of a short condition."""
        key = frozenset(context)
        if key not in self._contexts:
            self._contexts[key] = cel.Context(context)
        return self._contexts[key]

    def converted(self, name: str) -> tuple[Any, int, int]:
        """(value as the engine takes it, largest list or map, weight)."""
        if name not in self._converted:
            converter = _Converter()
            value = _convert_named(converter, name, self[name])
            self._converted[name] = (value, converter.largest, converter.weight)
        return self._converted[name]


def _context(scope: dict, names: set[str]) -> tuple[dict, _Converter]:
    """The converted scope values the expression reads, and their measurements."""
    converter, context = _Converter(), {}
    for name in names:
        if name not in scope:
            continue
        if isinstance(scope, PreparedScope):
            context[name], largest, weight = scope.converted(name)
            converter.largest = max(converter.largest, largest)
            converter.weight += weight
        else:
            context[name] = _convert_named(converter, name, scope[name])
    return context, converter


def _convert_named(converter: _Converter, name: str, value: Any) -> Any:
    try:
        return converter.convert(value)
    except _Unsupported as exc:
        path = ".".join([name, *reversed(exc.path)])
        raise ExpressionEvaluationError(
            f"cannot use a value of type {exc.type_name} in an expression (at {path})"
        ) from None
    except RecursionError:
        raise ExpressionEvaluationError(f"scope value {name!r} nests too deeply") from None


def _weigh_path(context: dict, path: tuple[str, ...], fallback: int) -> int:
    """Weight (as _Converter counts it) of the converted value at `path`, if it is there."""
    value: Any = context
    for part in path:
        if not isinstance(value, dict):
            return fallback
        if part not in value:
            return 1
        value = value[part]
    weigher = _Converter()
    weigher.convert(value)
    return weigher.weight


class _Unsupported(Exception):
    def __init__(self, type_name: str):
        super().__init__(type_name)
        self.type_name, self.path = type_name, []


class _Converter:
    """Turn scope values into the JSON-like types the engine takes, measuring them on the way.

    `largest` is the longest list or map seen; `weight` counts values, long strings by the
    4 KiB (the engine copies map/filter results item by item, so both drive its cost).
    """

    def __init__(self) -> None:
        self.largest = 0
        self.weight = 0

    def convert(self, value: Any) -> Any:
        self.weight += 1
        if isinstance(value, (str, bytes, bytearray)):
            self.weight += len(value) // 4096
        if value is None or isinstance(value, (bool, str, float)):
            return value
        if isinstance(value, enum.Enum):
            return self.convert(value.value)
        if isinstance(value, int):
            return value if value in _INT64 else float(value)
        for types, plain in _PLAIN:
            if isinstance(value, types):
                return plain(value)
        if isinstance(value, Mapping):
            self.largest = max(self.largest, len(value))
            return {self.key(key): self.item(item, key) for key, item in value.items()}
        if isinstance(value, (list, tuple, set, frozenset)):
            self.largest = max(self.largest, len(value))
            if isinstance(value, (set, frozenset)):
                value = sorted(value, key=repr)
            return [self.item(item, index) for index, item in enumerate(value)]
        raise _Unsupported(type(value).__name__)

    def key(self, key: Any) -> Any:
        converted = self.convert(key)
        return converted if isinstance(converted, (str, int)) else str(converted)

    def item(self, value: Any, key: Any) -> Any:
        try:
            return self.convert(value)
        except _Unsupported as exc:
            exc.path.append(str(key))
            raise
