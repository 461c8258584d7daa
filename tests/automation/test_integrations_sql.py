"""`sql.query` and `sql.execute` steps through the engine, against a SQLite file and a
second PostgreSQL database: rows come back as objects, a parameter value is data and
never SQL, writes need `allowWrites`, and a statement past its timeout fails the step."""

import json
import os
import sqlite3

import psycopg
import pytest

from automation.connections.services import ConnectionInvalidError, connection_create
from automation.models import Run, StepRun
from automation.services.processes import process_save
from automation.services.runs import run_start
from entities.services import entity_create

pytestmark = pytest.mark.django_db(transaction=True)

PG_SERVER = "host=127.0.0.1 port=5432 user=postgres connect_timeout=3"
INJECTION = "Ada' OR '1'='1'; DROP TABLE customers; --"
SLOW = {"sqlite": "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) "
                  "SELECT count(*) FROM n",
        "postgresql": "SELECT pg_sleep(5)"}
CUSTOMERS = [("Ada", "ada@example.com", 12.5), ("Bob", "bob@example.com", 3)]


def _fill(cursor, placeholder: str) -> None:
    cursor.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT UNIQUE, "
                   "email TEXT, total NUMERIC(10, 2))")
    for number, row in enumerate(CUSTOMERS, start=1):
        cursor.execute(f"INSERT INTO customers VALUES ({', '.join([placeholder] * 4)})",
                       (number, *row))


@pytest.fixture
def sqlite_url(tmp_path, settings):
    path = tmp_path / "shop.sqlite3"
    with sqlite3.connect(path) as db:
        _fill(db.cursor(), "?")
    db.close()
    settings.ENTITYFLOW_SQL_SQLITE_DIRS = [str(tmp_path)]
    return f"sqlite://{path}"


@pytest.fixture
def postgres_url():
    """A second PostgreSQL database next to the test database, dropped afterwards."""
    name = f"entityflow_sql_test_{os.getpid()}"
    try:
        server = psycopg.connect(f"{PG_SERVER} dbname=postgres", autocommit=True)
    except psycopg.OperationalError:
        if os.environ.get("CI") == "true":
            pytest.fail("no PostgreSQL on 127.0.0.1:5432; CI=true requires it")
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    with server:
        server.execute(f'DROP DATABASE IF EXISTS "{name}"')
        server.execute(f'CREATE DATABASE "{name}"')
        with psycopg.connect(f"{PG_SERVER} dbname={name}", autocommit=True) as db:
            _fill(db.cursor(), "%s")
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
        server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request):
    """(dialect, url) of a database holding the customers table."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return request.param, request.getfixturevalue(fixture)


def sql_step(function: str, slug: str = "sql", **params):
    return process_save(slug=slug, name="SQL step", definition={"steps": [
        {"id": "sql", "type": "function", "function": function,
         "config": {"params": params}}]})


def run_of(process, **kwargs) -> Run:
    run, _ = run_start(process=process, trigger={"type": "manual"}, **kwargs)
    run.refresh_from_db()
    return run


def names_in(url: str) -> list[str]:
    process = sql_step("sql.query", slug="count", sql="SELECT name FROM customers ORDER BY id")
    run = run_of(process)
    assert run.status == Run.Status.COMPLETED, run.error
    return [row["name"] for row in run.result["rows"]]


def test_query_returns_rows_as_objects_with_templated_params(database, order_type):
    _, url = database
    connection_create(provider="sql", name="shop", credentials={"url": url})
    process = sql_step("sql.query", sql="SELECT name, email, total FROM customers "
                                        "WHERE total >= :least ORDER BY id",
                       params={"least": "{{ entity.data.total }}"})
    order = entity_create(entity_type=order_type, reference="ORD-1",
                          data={"customer": {"name": "Ada"}, "total": 5})

    run = run_of(process, entity=order)

    assert run.status == Run.Status.COMPLETED, run.error
    assert run.result == {"rows": [{"name": "Ada", "email": "ada@example.com", "total": 12.5}],
                          "columns": ["name", "email", "total"], "rowCount": 1,
                          "truncated": False}
    step = StepRun.objects.get(run=run)
    assert step.output == run.result  # in run history like any step
    assert {"message": "sql.query via shop"} in step.logs


def test_a_row_limit_truncates(database):
    _, url = database
    connection_create(provider="sql", name="shop", credentials={"url": url})

    run = run_of(sql_step("sql.query", sql="SELECT id FROM customers ORDER BY id", rowLimit=1))

    assert run.status == Run.Status.COMPLETED, run.error
    assert run.result["rows"] == [{"id": 1}] and run.result["truncated"] is True


def test_an_injection_attempt_in_a_parameter_is_data(database):
    _, url = database
    connection_create(provider="sql", name="shop", credentials={"url": url},
                      options={"allowWrites": True})
    lookup = sql_step("sql.query", sql="SELECT id FROM customers WHERE name = :name",
                      params={"name": INJECTION})
    insert = sql_step("sql.execute", slug="insert",
                      sql="INSERT INTO customers (id, name) VALUES (:id, :name)",
                      params={"id": 3, "name": INJECTION})

    found, inserted = run_of(lookup), run_of(insert)

    assert found.status == Run.Status.COMPLETED, found.error
    assert found.result["rows"] == []  # not every row, as `OR '1'='1'` would give
    assert inserted.status == Run.Status.COMPLETED, inserted.error
    assert inserted.result["rowCount"] == 1
    assert names_in(url) == ["Ada", "Bob", INJECTION]  # stored verbatim, table still there


def test_the_sql_text_is_never_a_template(database):
    _, url = database
    connection_create(provider="sql", name="shop", credentials={"url": url})
    process = sql_step("sql.query", sql="SELECT id FROM customers WHERE name = '{{ input.n }}'")
    unquoted = sql_step("sql.query", slug="unquoted",
                        sql="SELECT id FROM customers WHERE name = {{ input.n }}")

    quoted_run = run_of(process, input={"n": "x' OR '1'='1"})
    unquoted_run = run_of(unquoted, input={"n": "1 OR 1=1"})

    assert quoted_run.status == Run.Status.COMPLETED, quoted_run.error
    assert quoted_run.result["rows"] == []  # the braces were compared as text
    assert unquoted_run.status == Run.Status.FAILED
    assert "not a template" in unquoted_run.error["message"]


def test_execute_on_a_read_only_connection_is_refused(database):
    _, url = database
    connection_create(provider="sql", name="shop", credentials={"url": url})

    run = run_of(sql_step("sql.execute", sql="DELETE FROM customers"))

    assert run.status == Run.Status.FAILED
    assert run.error["code"] == "connector_misconfigured"
    assert "allowWrites" in run.error["message"]
    assert names_in(url) == ["Ada", "Bob"]


def test_query_runs_read_only_even_when_writes_are_allowed(database):
    _, url = database
    connection_create(provider="sql", name="shop", credentials={"url": url},
                      options={"allowWrites": True})

    run = run_of(sql_step("sql.query", sql="DELETE FROM customers"))

    assert run.status == Run.Status.FAILED
    assert "read-only" in run.error["message"]
    assert names_in(url) == ["Ada", "Bob"]


def test_execute_commits_and_returns_rows(database):
    _, url = database
    connection_create(provider="sql", name="shop", credentials={"url": url},
                      options={"allowWrites": True})
    process = sql_step("sql.execute", sql="UPDATE customers SET total = total + :add "
                                          "WHERE name = :name RETURNING total",
                       params={"add": 1, "name": "Bob"})

    run = run_of(process)

    assert run.status == Run.Status.COMPLETED, run.error
    assert run.result["rowCount"] == 1 and run.result["rows"] == [{"total": 4}]


def test_a_statement_past_its_timeout_fails_the_step_clearly(database):
    dialect, url = database
    connection_create(provider="sql", name="shop", credentials={"url": url})

    run = run_of(sql_step("sql.query", sql=SLOW[dialect], timeout=0.3))

    assert run.status == Run.Status.FAILED
    assert run.error["code"] == "connector_timeout"
    assert "ran past its time limit of 0.3 s" in run.error["message"]
    assert StepRun.objects.get(run=run).attempt == 1  # not retried


def test_a_network_database_goes_through_the_outbound_guard(postgres_url, settings):
    settings.ENTITYFLOW_OUTBOUND_ALLOWLIST = []
    connection_create(provider="sql", name="shop", credentials={"url": postgres_url})

    run = run_of(sql_step("sql.query", sql="SELECT 1 AS one"))

    assert run.status == Run.Status.FAILED and run.error["code"] == "outbound_blocked"
    assert "127.0.0.1 is a loopback address" in run.error["message"]


def test_a_sqlite_file_outside_the_allowed_directories_is_refused(sqlite_url, settings):
    settings.ENTITYFLOW_SQL_SQLITE_DIRS = []
    connection_create(provider="sql", name="shop", credentials={"url": sqlite_url})

    run = run_of(sql_step("sql.query", sql="SELECT 1 AS one"))

    assert run.status == Run.Status.FAILED and run.error["code"] == "outbound_blocked"
    assert "ENTITYFLOW_SQL_SQLITE_DIRS" in run.error["message"]


def test_the_password_is_stored_encrypted_and_kept_out_of_history(postgres_url):
    secret = "pg-password-never-shown-7f3a"
    url = postgres_url.replace("postgres@", "entityflow_no_such_role@")
    connection = connection_create(provider="sql", name="shop",
                                   credentials={"url": url, "password": secret})

    run = run_of(sql_step("sql.query", sql="SELECT 1 AS one"))

    assert secret not in connection.credentials_encrypted
    assert run.status == Run.Status.FAILED
    assert run.error["code"] == "connector_auth_failed", run.error
    assert secret not in json.dumps(list(StepRun.objects.values("output", "logs", "error")))


@pytest.mark.parametrize("credentials, field", [
    ({"url": "postgresql://app:hunter2@db.example.com/shop"}, "credentials.url"),
    ({"url": "oracle://db.example.com/shop"}, "credentials.url"),
    ({"url": "sqlite://relative.sqlite3"}, "credentials.url"),
    ({"url": "postgresql://db.example.com/shop?host=/var/run/postgresql"}, "credentials.url"),
    ({"password": "x"}, "credentials.url"),
])
def test_unusable_database_urls_are_refused_when_saved(credentials, field):
    with pytest.raises(ConnectionInvalidError) as caught:
        connection_create(provider="sql", name="shop", credentials=credentials)
    assert field in caught.value.fields


def test_options_that_change_what_a_connection_may_do_are_checked():
    with pytest.raises(ConnectionInvalidError) as caught:
        connection_create(provider="sql", name="shop", options={"allowWrites": "yes"},
                          credentials={"url": "postgresql://app@db.example.com/shop"})
    assert list(caught.value.fields) == ["options.allowWrites"]
