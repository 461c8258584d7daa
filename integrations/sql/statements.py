"""`:name` placeholders in a step's SQL, turned into the driver's own parameter style.

Users write one placeholder syntax for every database (`WHERE id = :id`); the values go
to the driver separately and are bound by it, never pasted into the text. This scanner
only has to know where string literals, quoted identifiers and comments start and end,
so that a `:name`, `%` or `;` inside them is left alone. It also refuses what would make
a statement ambiguous: positional placeholders (`?`, `$1`, `%s`), `{{ }}` templates
(the SQL text is never a template) and a second statement after a `;`.
"""

import re
from dataclasses import dataclass

from integrations.exceptions import ConnectorConfigError

NAMED = "named"  # sqlite3: :name
PYFORMAT = "pyformat"  # psycopg, PyMySQL, MySQLdb: %(name)s

_NAME = re.compile(r":([A-Za-z_][A-Za-z0-9_]*)")
_DOLLAR_QUOTE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_POSITIONAL = {
    "postgresql": re.compile(r"\$\d+|%s\b|%\(\w+\)s"),
    "mysql": re.compile(r"%s\b|%\(\w+\)s"),
    "sqlite": re.compile(r"\?\d*|[@$][A-Za-z_]"),
}
_IDENTIFIER_QUOTES = {"postgresql": '"', "mysql": "`", "sqlite": '"`['}
_CLOSING = {"[": "]"}


@dataclass(frozen=True)
class Statement:
    """The SQL in the driver's style and the placeholder names it uses, in order."""

    text: str
    names: tuple[str, ...]


def prepare(sql: str, *, dialect: str, paramstyle: str) -> Statement:
    """The statement for the driver; ConnectorConfigError (field `sql`) when it is not
    one statement with named placeholders."""
    out: list[str] = []
    names: list[str] = []
    started = ended = False  # ended: a `;` ended the statement, only comments may follow
    i = 0
    while i < len(sql):
        end = _literal_end(sql, i, dialect)
        if sql[i].isspace() or (end is not None and _is_comment(sql, i, dialect)):
            end = end or i + 1
            out.append(_escaped(sql[i:end], paramstyle))
            i = end
            continue
        if ended:
            _refuse("one statement per call: there is more SQL after the ';'.")
        if end is not None:
            out.append(_escaped(sql[i:end], paramstyle))
            i, started = end, True
            continue
        if sql[i] == ";":  # the end: dropped, so a driver may wrap the statement
            ended = True
            i += 1
            continue
        i = _token(sql, i, dialect, paramstyle, out, names)
        started = True
    if not started:
        _refuse("there is no statement.")
    return Statement("".join(out).rstrip(), tuple(names))


def _token(sql: str, i: int, dialect: str, paramstyle: str, out: list, names: list) -> int:
    """Copy one token at `i` (a placeholder, a cast, one character) and return the next
    position."""
    if sql.startswith("::", i):
        out.append("::")
        return i + 2
    if sql.startswith("{{", i):
        _refuse("the SQL text is not a template: pass values as :name parameters "
                "(\"params\": {\"name\": \"{{ … }}\"}).")
    positional = _POSITIONAL[dialect].match(sql, i)
    if positional:
        _refuse(f"positional or driver placeholders such as {positional.group()!r} are not "
                "accepted: write :name and pass \"params\": {\"name\": …}.")
    placeholder = _NAME.match(sql, i)
    if placeholder and not _inside_word(sql, i):
        names.append(placeholder.group(1))
        out.append(f"%({placeholder.group(1)})s" if paramstyle == PYFORMAT
                   else placeholder.group())
        return placeholder.end()
    out.append(_escaped(sql[i], paramstyle))
    return i + 1


def _inside_word(sql: str, i: int) -> bool:
    """`a:b` (a MySQL label, a time literal outside quotes) is not a placeholder."""
    return i > 0 and (sql[i - 1].isalnum() or sql[i - 1] in "_]")


def _is_comment(sql: str, i: int, dialect: str) -> bool:
    return sql.startswith(("--", "/*"), i) or (sql[i] == "#" and dialect == "mysql")


def _literal_end(sql: str, i: int, dialect: str) -> int | None:
    """Where the string literal, quoted identifier or comment starting at `i` ends, or
    None when none starts there."""
    char = sql[i]
    if _is_comment(sql, i, dialect) and not sql.startswith("/*", i):
        end = sql.find("\n", i)
        return len(sql) if end < 0 else end
    if sql.startswith("/*", i):
        end = sql.find("*/", i + 2)
        return len(sql) if end < 0 else end + 2
    if char == "'" or (char == '"' and dialect == "mysql"):
        backslashes = dialect == "mysql" or (i > 0 and sql[i - 1] in "eE"
                                              and not _inside_word(sql, i - 1))
        return _quoted_end(sql, i, char, backslashes)
    if char in _IDENTIFIER_QUOTES[dialect]:
        return _quoted_end(sql, i, _CLOSING.get(char, char), False)
    if char == "$" and dialect == "postgresql":
        tag = _DOLLAR_QUOTE.match(sql, i)
        if tag:
            end = sql.find(tag.group(), tag.end())
            return len(sql) if end < 0 else end + len(tag.group())
    return None


def _quoted_end(sql: str, i: int, close: str, backslashes: bool) -> int:
    """The end of a quoted run: a doubled closing quote (or a backslash escape, where the
    dialect has them) stays inside. An unterminated quote runs to the end: the database
    reports it."""
    j = i + 1
    while j < len(sql):
        if backslashes and sql[j] == "\\":
            j += 2
            continue
        if sql[j] == close:
            if sql.startswith(close * 2, j) and close != "]":
                j += 2
                continue
            return j + 1
        j += 1
    return len(sql)


def _escaped(text: str, paramstyle: str) -> str:
    """`%` is the pyformat drivers' own marker, even inside literals: double it."""
    return text.replace("%", "%%") if paramstyle == PYFORMAT else text


def _refuse(message: str) -> None:
    raise ConnectorConfigError(f"SQL: {message}", fields={"sql": [message]})
