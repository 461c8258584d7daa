"""Static bounds on expressions, checked with a small tokenizer before anything runs.

The CEL engine has no step or memory limit of its own (see `entities.expressions` for
why that makes static bounds necessary), so every bound here is decided from the source
text; only `loop_work` is also applied to the data in scope just before a run. The
tokenizer follows the engine's lexer: `//` comments, string and bytes literals with
`r`/`b`/`br` prefixes, single, double and triple quotes, and backslash escapes outside
raw strings. Nothing here evaluates anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from entities.exceptions import ExpressionTooComplexError
from entities.expressions.tokens import Token, tokenize, translate  # noqa: F401 (re-exported)

MAX_SOURCE_LENGTH = 2000
MAX_BRACKET_DEPTH = 32
MAX_COMPREHENSION_DEPTH = 2
MAX_COMPREHENSIONS = 8
MAX_LITERAL_ELEMENTS = 100
MAX_CONCATENATIONS = 32
MAX_LOOP_CONCATENATIONS = 16
MAX_REGEX_CALLS = 4
# Estimated comprehension steps (see loop_work), on the literals when an expression is
# saved and on the real data before it runs; 5 million is about a second at worst.
MAX_LOOP_WORK = 5_000_000

COMPREHENSION_MACROS = frozenset(
    {"all", "exists", "exists_one", "existsOne", "map", "filter",
     "transformList", "transformMap", "transformMapEntry", "sortBy"}
)
# The engine builds map/filter results by copying the accumulated list on every
# iteration, so they cost n * (total size of the results), not n.
QUADRATIC_MACROS = COMPREHENSION_MACROS - {"all", "exists", "exists_one", "existsOne"}
KEYWORDS = frozenset({"true", "false", "null", "in"})
CLOSERS = {")": "(", "]": "[", "}": "{"}


@dataclass(frozen=True)
class Loop:
    """One comprehension, as the cost estimate sees it."""

    macro: str
    receiver_refs: int  # variables read by the walked-list expression (each may add a copy)
    literal_elements: int  # list/map literal elements written inside its body
    outer_paths: frozenset[tuple[str, ...]]  # scope values its body reads, e.g. ("input", "rate")
    outer_loop_weights: tuple[int, ...]  # enclosing loop variables read (0 = item of data)
    children: tuple[Loop, ...]


@dataclass(frozen=True)
class Shape:
    """What evaluation needs to know about a validated expression."""

    variables: frozenset[str]  # free top-level names (input, entity, ...)
    names: frozenset[str]  # every identifier token, for cross-checking the engine's parse
    loops: tuple[Loop, ...]  # top-level comprehensions
    biggest_literal: int
    literal_elements: int


def check_size(source: str, tokens: list[Token]) -> None:
    """Bounds that must hold before the engine's parser sees the source."""
    if len(source) > MAX_SOURCE_LENGTH:
        raise ExpressionTooComplexError(
            f"expression is {len(source)} characters long; at most {MAX_SOURCE_LENGTH} allowed"
        )
    depth = deepest = 0
    for token in tokens:
        if token.kind == "op" and token.text in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif token.kind == "op" and token.text in CLOSERS and depth:
            depth -= 1
    if deepest > MAX_BRACKET_DEPTH:
        raise ExpressionTooComplexError(
            f"brackets and parentheses nest {deepest} deep; at most {MAX_BRACKET_DEPTH} allowed"
        )


def _partners(tokens: list[Token]) -> dict[int, int]:
    """Map each bracket's index to the index of the bracket that pairs with it."""
    stack, partner = [], {}
    for index, token in enumerate(tokens):
        if token.kind == "op" and token.text in "([{":
            stack.append(index)
        elif token.kind == "op" and token.text in CLOSERS and stack:
            opener = stack.pop()
            partner[index], partner[opener] = opener, index
    return partner


def _follows_value(previous: Token | None) -> bool:
    """True when a bracket after `previous` is a call, an index or a message literal."""
    return previous is not None and (previous.kind != "op" or previous.text in CLOSERS)


def _receiver_start(tokens: list[Token], dot: int, partner: dict[int, int]) -> int:
    """Index of the first token of the postfix chain that ends just before `dot`."""
    index = dot - 1
    while index >= 0:
        token = tokens[index]
        if token.kind == "op" and token.text in CLOSERS:
            index = partner.get(index, index)
            if index and _follows_value(tokens[index - 1]):
                index -= 1  # the chain goes on to the left
                continue
            return index
        if token.kind == "op":
            return index + 1
        if index >= 1 and tokens[index - 1].text == ".":
            index -= 2  # member access: keep walking left
            continue
        return index
    return 0


def _receiver_concatenation(
    tokens: list[Token], start: int, end: int, partner: dict[int, int]
) -> tuple[bool, bool]:
    """Where '+' occurs in a comprehension's receiver tokens[start:end].

    Returns (lengthens, in_loop_body): '+' that can make the walked list longer, and
    '+' inside the body of a comprehension earlier in the chain (it makes the elements
    bigger, which matters only if the walking comprehension loops again inside).
    '+' inside an index (`items[i + 1]`) picks an element and is ignored.
    """
    lengthens = in_loop_body = False
    index = start
    while index < end:
        token, before = tokens[index], tokens[index - 1] if index > start else None
        if token.kind == "op" and token.text in "([" and _follows_value(before):
            stop = min(partner.get(index, end), end)
            plus = any(t.kind == "op" and t.text == "+" for t in tokens[index:stop])
            if token.text == "(" and before.text in COMPREHENSION_MACROS:
                in_loop_body |= plus
            elif token.text == "(":
                lengthens |= plus  # dyn(a + b) hands its argument straight back
            index = stop + 1
            continue
        lengthens |= token.kind == "op" and token.text == "+"
        index += 1
    return lengthens, in_loop_body


@dataclass
class _LoopFrame:
    macro: str
    variable: str | None
    receiver_refs: int
    element_weight: int  # weight of one walked item when the walked list is a pure literal
    receiver_body_plus: bool
    literal_elements: int = 0
    outer_paths: set[tuple[str, ...]] = field(default_factory=set)
    outer_loop_weights: list[int] = field(default_factory=list)
    children: list[Loop] = field(default_factory=list)


@dataclass
class _Bracket:
    literal: bool
    commas: int = 0
    loop: _LoopFrame | None = None  # set when these are a comprehension's parentheses


# (measure, limit, message): measured values above the limit are refused, in this order.
_LIMITS = (
    ("loop_depth", MAX_COMPREHENSION_DEPTH, "comprehensions nest {} deep; at most {} allowed"),
    ("loops", MAX_COMPREHENSIONS, "expression has {} comprehensions; at most {} allowed"),
    ("literal", MAX_LITERAL_ELEMENTS, "a list or map literal has {} elements; at most {} allowed"),
    ("concatenations", MAX_CONCATENATIONS, "'+' is used {} times; at most {} allowed"),
    ("loop_concatenations", MAX_LOOP_CONCATENATIONS,
     "'+' is used {} times inside comprehensions; at most {} allowed"),
    ("regex_calls", MAX_REGEX_CALLS, "matches() is called {} times; at most {} allowed"),
)


def _is_reference(tokens: list[Token], index: int) -> bool:
    """A name that reads a variable: not a field after '.', not a call, not a keyword."""
    token = tokens[index]
    before = tokens[index - 1] if index else None
    after = tokens[index + 1] if index + 1 < len(tokens) else None
    return (
        token.kind == "name"
        and token.text not in KEYWORDS
        and (before is None or before.text != ".")
        and (after is None or after.text != "(")
    )


def _path(tokens: list[Token], index: int) -> tuple[str, ...]:
    """`input.order.total` -> ("input", "order", "total"), stopping before method calls."""
    parts, at = [tokens[index].text], index + 1
    while at + 1 < len(tokens) and tokens[at].text == "." and tokens[at + 1].kind == "name":
        if at + 2 < len(tokens) and tokens[at + 2].text == "(":
            break
        parts.append(tokens[at + 1].text)
        at += 2
    return tuple(parts)


def _literal_item_weight(receiver: list[Token]) -> int:
    """Upper bound on the weight of one item of a pure literal: its nested elements."""
    depth = nested = 0
    for token in receiver:
        if token.kind != "op":
            continue
        if token.text in "([{":
            depth += 1
            nested += depth >= 2
        elif token.text in CLOSERS:
            depth -= 1
        elif token.text == "," and depth >= 2:
            nested += 1
    return 1 + nested


class _Scan:
    """One left-to-right pass over the tokens of a syntactically valid expression."""

    def __init__(self, tokens: list[Token]):
        self.tokens, self.partner = tokens, _partners(tokens)
        self.stack: list[_Bracket] = []
        self.measures = {measure: 0 for measure, _, _ in _LIMITS}
        self.problems: list[str] = []
        self.variables: set[str] = set()
        self.loops: list[Loop] = []  # top-level comprehensions
        self.literal_total = 0
        self.pending: _LoopFrame | None = None
        for index, token in enumerate(tokens):
            previous = tokens[index - 1] if index else None
            following = tokens[index + 1] if index + 1 < len(tokens) else None
            if token.kind == "name":
                self.name(index, token, previous, following)
            elif token.kind == "op":
                self.operator(token, previous, following)

    def open_loops(self) -> list[_LoopFrame]:
        return [frame.loop for frame in self.stack if frame.loop]

    def grow(self, measure: str, value: int) -> None:
        self.measures[measure] = max(self.measures[measure], value)

    def name(self, index: int, token: Token, previous: Token | None, following: Token | None):
        calls = following is not None and following.text == "("
        if token.text in COMPREHENSION_MACROS and calls:
            self.measures["loops"] += 1
            self.grow("loop_depth", len(self.open_loops()) + 1)
            self.pending = self.comprehension(index, token, previous)
        elif token.text == "matches" and calls:
            self.measures["regex_calls"] += 1
            if self.open_loops():
                self.problems.append(
                    "matches() inside map/filter/all/exists is not allowed: "
                    "its pattern is recompiled for every item"
                )
        elif _is_reference(self.tokens, index):
            if previous is not None and previous.text == "(" and self.stack[-1].loop:
                return  # the loop variable being declared
            loops = self.open_loops()
            binder = max((k for k, loop in enumerate(loops) if loop.variable == token.text),
                         default=-1)
            if binder < 0:
                self.variables.add(token.text)
            for loop in loops[binder + 1 :]:  # loops this reference reaches out of
                if binder < 0:
                    loop.outer_paths.add(_path(self.tokens, index))
                else:
                    loop.outer_loop_weights.append(loops[binder].element_weight)

    def comprehension(self, index: int, token: Token, previous: Token | None) -> _LoopFrame:
        refs, element_weight, body_plus = 1, 0, False
        if previous is not None and previous.text == ".":
            start = _receiver_start(self.tokens, index - 1, self.partner)
            lengthens, body_plus = _receiver_concatenation(self.tokens, start, index - 1,
                                                           self.partner)
            if lengthens:
                self.problems.append(
                    f"the list that {token.text}() walks is built with '+'; "
                    "concatenating lists to loop over is not allowed"
                )
            receiver = range(start, index - 1)
            refs = max(1, sum(_is_reference(self.tokens, at) for at in receiver))
            if not any(_is_reference(self.tokens, at) for at in receiver):
                element_weight = _literal_item_weight(self.tokens[start : index - 1])
        variable = self.tokens[index + 2] if index + 2 < len(self.tokens) else None
        return _LoopFrame(token.text, variable.text if variable else None, refs,
                          element_weight, body_plus)

    def operator(self, token: Token, previous: Token | None, following: Token | None) -> None:
        if token.text in "([{":
            literal = token.text == "{" or (token.text == "[" and not _follows_value(previous))
            frame = _Bracket(literal=literal)
            if token.text == "(" and self.pending:
                frame.loop, self.pending = self.pending, None
            self.stack.append(frame)
        elif token.text == "," and self.stack:
            self.stack[-1].commas += 1
        elif token.text == "+":
            self.measures["concatenations"] += 1
            self.measures["loop_concatenations"] += bool(self.open_loops())
        elif token.text in CLOSERS and self.stack:
            self.close(self.stack.pop(), previous)

    def close(self, frame: _Bracket, previous: Token | None) -> None:
        if frame.literal and previous is not None and previous.text not in ("[", "{"):
            size = frame.commas + (0 if previous.text == "," else 1)
            self.grow("literal", size)
            self.literal_total += size
            for loop in self.open_loops():
                loop.literal_elements += size
        if frame.loop:
            done = frame.loop
            if done.children and done.receiver_body_plus:
                self.problems.append(
                    f"{done.macro}() loops again over items built with '+' by an earlier "
                    "comprehension; concatenating lists to loop over is not allowed"
                )
            loop = Loop(done.macro, done.receiver_refs, done.literal_elements,
                        frozenset(done.outer_paths), tuple(done.outer_loop_weights),
                        tuple(done.children))
            parents = self.open_loops()
            (parents[-1].children if parents else self.loops).append(loop)

    def refusals(self) -> list[str]:
        exceeded = [
            message.format(self.measures[measure], limit)
            for measure, limit, message in _LIMITS
            if self.measures[measure] > limit
        ]
        return exceeded + self.problems


@lru_cache(maxsize=4096)
def analyse(source: str) -> Shape:
    """Check every static bound; raise ExpressionTooComplexError naming the ones exceeded."""
    tokens = tokenize(source)
    check_size(source, tokens)
    scan = _Scan(tokens)
    if refusals := scan.refusals():
        raise ExpressionTooComplexError("; ".join(refusals))
    names = frozenset(token.text for token in tokens if token.kind == "name")
    literal_max = scan.measures["literal"]
    shape = Shape(frozenset(scan.variables), names, tuple(scan.loops), literal_max,
                  scan.literal_total)
    work = loop_work(shape, largest=0, weight=0, path_weight=lambda path: 1)
    if work > MAX_LOOP_WORK:
        raise ExpressionTooComplexError(
            f"the comprehensions would do about {work} steps over the literals alone; "
            f"at most {MAX_LOOP_WORK} allowed"
        )
    return shape


def unexplained(shape: Shape, engine_names: set[str]) -> set[str]:
    """Names the engine's own parse found (variables, functions) that no token accounts for.

    Anything here means the tokenizer read code as string or comment, so its bounds
    could be wrong; callers refuse the expression. `.x` (root-scoped) counts as `x`.
    """
    return {
        name for name in engine_names
        if any(part and part not in shape.names for part in name.split("."))
    }


def loop_work(shape: Shape, largest: int, weight: int, path_weight) -> int:
    """Estimated steps of the expression's comprehensions, to compare with MAX_LOOP_WORK.

    `largest` is the length of the longest list or map in scope and `weight` the number
    of values in scope (see expressions._Converter); `path_weight(("input", "rate"))`
    weighs the value a body reads from outside its loop. Every loop copies each item it
    binds, and runs its body n times. The engine's map/filter also copy their partial
    result on every iteration, so they cost n * (total size of their results) on top;
    results are at most the walked items (filter), or for map the items plus whatever
    literals and outside values its body adds per item.
    """
    n = max(largest, shape.biggest_literal, 1)
    total = weight + shape.literal_elements + 1

    def cost(loop: Loop) -> int:
        # every item is copied once when bound to the loop variable, then the body runs
        steps = total * loop.receiver_refs + n * (1 + sum(cost(child) for child in loop.children))
        if loop.macro in QUADRATIC_MACROS:
            results = total * loop.receiver_refs
            if loop.macro != "filter":
                outside = sum(path_weight(path) for path in loop.outer_paths)
                outside += sum(w or total for w in loop.outer_loop_weights)
                results += n * (loop.literal_elements + outside)
            steps += n * results
        return steps

    return sum(cost(loop) for loop in shape.loops)
