"""The SQL connector's parts that need no database: `:name` placeholders turned into the
driver's style, database URLs, and database values as JSON."""

import datetime
import uuid
from decimal import Decimal

import pytest

from integrations.exceptions import ConnectorConfigError
from integrations.sql import targets
from integrations.sql.statements import NAMED, PYFORMAT, prepare
from integrations.sql.values import jsonable


def pg(sql: str):
    return prepare(sql, dialect="postgresql", paramstyle=PYFORMAT)


def test_named_placeholders_become_the_drivers_style():
    statement = pg("SELECT * FROM t WHERE a = :a AND b = :b AND c = :a")
    assert statement.text == "SELECT * FROM t WHERE a = %(a)s AND b = %(b)s AND c = %(a)s"
    assert statement.names == ("a", "b", "a")
    sqlite = prepare("SELECT :a", dialect="sqlite", paramstyle=NAMED)
    assert sqlite.text == "SELECT :a" and sqlite.names == ("a",)


@pytest.mark.parametrize("sql, text", [
    ("SELECT ':no', \"col:no\" -- :no\n/* :no */", "SELECT ':no', \"col:no\" -- :no\n/* :no */"),
    ("SELECT x::text, $$ :no $$, $tag$ :no $tag$", "SELECT x::text, $$ :no $$, $tag$ :no $tag$"),
    ("SELECT E'it\\'s :no', 'it''s :no'", "SELECT E'it\\'s :no', 'it''s :no'"),
    ("SELECT '50%' LIKE :p;", "SELECT '50%%' LIKE %(p)s"),
    ("SELECT 1; -- done", "SELECT 1 -- done"),
])
def test_literals_comments_and_casts_are_left_alone(sql, text):
    assert pg(sql).text == text


@pytest.mark.parametrize("dialect, sql, says", [
    ("postgresql", "SELECT 1; DROP TABLE t", "one statement"),
    ("sqlite", "SELECT 1; 'x'", "one statement"),
    ("postgresql", "SELECT $1", "positional"),
    ("postgresql", "SELECT %s", "positional"),
    ("postgresql", "SELECT %(a)s", "positional"),
    ("sqlite", "SELECT ?", "positional"),
    ("sqlite", "SELECT @a", "positional"),
    ("postgresql", "SELECT {{ entity.id }}", "not a template"),
    ("postgresql", "-- only a comment\n;", "no statement"),
])
def test_what_would_be_ambiguous_is_refused(dialect, sql, says):
    style = NAMED if dialect == "sqlite" else PYFORMAT
    with pytest.raises(ConnectorConfigError, match=says) as caught:
        prepare(sql, dialect=dialect, paramstyle=style)
    assert "sql" in caught.value.fields


def test_jsonb_operators_are_not_placeholders():
    assert pg("SELECT data ? :key, data ?| :keys").names == ("key", "keys")


def test_database_urls():
    target = targets.parse("postgres://app@db.example.com/shop?sslmode=require", "pw")
    assert (target.dialect, target.host, target.port, target.database, target.user) == (
        "postgresql", "db.example.com", 5432, "shop", "app")
    assert target.query == {"sslmode": "require"} and target.password == "pw"
    assert "pw" not in repr(target) and "pw" not in target.label
    assert targets.parse("sqlite:////var/data/a.sqlite3", "").path == "/var/data/a.sqlite3"
    assert targets.parse("sqlite:///var/data/a.sqlite3", "").path == "/var/data/a.sqlite3"
    assert targets.parse("mysql://app@db.example.com/shop", "").port == 3306


@pytest.mark.parametrize("url", [
    "", "postgresql://app:secret@db.example.com/shop", "postgresql:///shop",
    "postgresql://db.example.com/", "postgresql://db.example.com/shop?options=-c%20x",
    "sqlite:///", "sqlite://host/file", "mssql://db.example.com/shop",
])
def test_unusable_urls(url):
    assert targets.url_errors(url)


def test_a_url_with_a_password_says_where_it_goes():
    [message] = targets.url_errors("postgresql://app:secret@db.example.com/shop")
    assert "Password field" in message and "secret" not in message


def test_database_values_as_json():
    moment = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    ident = uuid.UUID(int=1)
    assert jsonable({"a": [Decimal("12.50"), Decimal("3"), Decimal("0.1000000000000000000001"),
                           moment, datetime.date(2026, 1, 2), b"\x00\x01", ident,
                           float("nan"), datetime.timedelta(seconds=90)]}) == {
        "a": [12.5, 3, "0.1000000000000000000001", "2026-01-02T03:04:05+00:00", "2026-01-02",
              "AAE=", str(ident), "nan", 90.0]}
