"""A tokenizer for CEL source that follows the engine's lexer: `//` comments, string and
bytes literals with `r`/`b`/`br` prefixes, single, double and triple quotes, and
backslash escapes outside raw strings. Used for the static bounds and for accepting
`===`/`!==` without touching string literals."""

from __future__ import annotations

import re
from typing import NamedTuple


class Token(NamedTuple):
    kind: str  # "string", "number", "name" or "op"
    text: str
    start: int



_STRING = re.compile(r"""(?:[bB]?[rR]|[bB])?('''|\"\"\"|'|")""")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_EXPONENT = r"(?:[eE][+-]?\d+)?"
_NUMBER = re.compile(rf"0[xX][0-9a-fA-F]+[uU]?|\d+(?:\.\d+)?{_EXPONENT}[uU]?|\.\d+{_EXPONENT}")
_OPERATORS = ("===", "!==", "==", "!=", "<=", ">=", "&&", "||")


def _string_end(source: str, pos: int, quote: str, raw: bool) -> int:
    while pos < len(source):
        if source.startswith(quote, pos):
            return pos + len(quote)
        char = source[pos]
        if char in "\r\n" and len(quote) == 1:
            return pos  # the engine refuses this literal; it reports the error
        pos += 2 if char == "\\" and not raw else 1
    return len(source)


def tokenize(source: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(source):
        char = source[pos]
        if char in " \t\n\r\f":
            pos += 1
            continue
        if source.startswith("//", pos):
            newline = source.find("\n", pos)
            pos = len(source) if newline < 0 else newline
            continue
        if match := _STRING.match(source, pos):
            raw = "r" in source[pos : match.start(1)].lower()
            end = _string_end(source, match.end(), match.group(1), raw)
            kind = "string"
        elif match := (_NAME.match(source, pos) or _NUMBER.match(source, pos)):
            end = match.end()
            kind = "name" if _NAME.match(char) else "number"
        else:
            width = next((len(op) for op in _OPERATORS if source.startswith(op, pos)), 1)
            end, kind = pos + width, "op"
        tokens.append(Token(kind, source[pos:end], pos))
        pos = end
    return tokens


def translate(source: str, tokens: list[Token]) -> str:
    """Rewrite `===`/`!==` outside string literals to `==`/`!=`, keeping every column."""
    pieces, last = [], 0
    for token in tokens:
        if token.kind == "op" and token.text in ("===", "!=="):
            pieces += [source[last : token.start], token.text[:2] + " "]
            last = token.start + 3
    return "".join(pieces) + source[last:]
