"""PostgreSQL (psycopg) and SQLite (the standard library) sessions; MySQL lives in
`mysql` because its driver is optional. See `session` for what a session promises."""

import math
import re
import sqlite3
import time
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg.types.json import Jsonb

from integrations.exceptions import (
    ConnectorAuthError,
    ConnectorConflictError,
    ConnectorError,
    ConnectorRequestError,
    ConnectorUnavailableError,
)
from integrations.net import check_host
from integrations.sql.mysql import MysqlSession
from integrations.sql.session import READ_ONLY_MESSAGE, Session
from integrations.sql.statements import NAMED
from integrations.sql.targets import check_sqlite_file

# libpq reads ~/.pgpass and PGPASSWORD when a connection gives no password: a user's
# connection must never borrow the worker's own database password.
NO_PASSFILE = "/nonexistent/entityflow-sql-no-passfile"
_READS = re.compile(r"\s*\(*\s*(select|with|values|table)\b", re.IGNORECASE)
# What libpq says when the server refuses a login (no SQLSTATE reaches the client then).
_AUTH_FAILED = ("password authentication failed", "no pg_hba.conf entry", "role \"",
                "no password supplied", "authentication failed")
SQLITE_PROGRESS_STEPS = 10_000  # virtual machine steps between two looks at the clock


class PostgresSession(Session):
    dialect = "postgresql"
    errors = (psycopg.Error,)

    def connect(self, connect_timeout: float) -> None:
        target = self.target
        address = check_host(target.host, target.port)
        kwargs = {"host": target.host, "port": target.port, "dbname": target.database,
                  "user": target.user or None, "password": target.password,
                  "passfile": NO_PASSFILE, "application_name": "entityflow",
                  "connect_timeout": max(2, math.ceil(connect_timeout)), **target.query}
        if address:
            kwargs["hostaddr"] = address  # the address the guard checked, not a new lookup
        self.connection = psycopg.connect(**kwargs, autocommit=False)
        self.connection.read_only = self.read_only
        milliseconds = str(max(1, round(self.statement_timeout * 1000)))
        self.connection.execute("SELECT set_config('statement_timeout', %s, true)",
                                [milliseconds])

    def execute(self, text: str, values: dict) -> Any:
        """A read starts as a server-side cursor, so rows past the limit never leave the
        server; other statements (SHOW, EXPLAIN, writes) run as they are."""
        named = self.read_only and _READS.match(text)
        cursor = (self.connection.cursor(name="entityflow_sql") if named
                  else self.connection.cursor())
        cursor.execute(text, {key: self.adapt(value) for key, value in values.items()})
        return cursor

    def adapt(self, value: Any) -> Any:
        """Objects become jsonb; a list of scalars stays an array (`= ANY(:ids)`)."""
        if isinstance(value, dict) or (isinstance(value, list)
                                       and any(isinstance(v, dict | list) for v in value)):
            return Jsonb(value)
        return value

    def error(self, exc: Exception) -> ConnectorError:
        state = getattr(exc, "sqlstate", None) or ""
        diag = getattr(exc, "diag", None)
        message = (getattr(diag, "message_primary", None) or str(exc)).strip()
        message = " ".join(message.split())[:300]
        where = self.target.label
        if state == "57014":
            return self.timed_out()
        if state == "25006":
            return ConnectorRequestError(READ_ONLY_MESSAGE)
        login = not state  # the server refused the connection itself
        if state.startswith("28") or (login and any(sign in message for sign in _AUTH_FAILED)):
            return ConnectorAuthError(f"The {where} rejected the credentials: {message}")
        if login and "does not exist" in message:  # the database named in the URL
            return ConnectorRequestError(f"The {where} cannot be opened: {message}")
        if state.startswith(("08", "40", "53", "57P")) or (
                not state and isinstance(exc, psycopg.OperationalError)):
            return ConnectorUnavailableError(f"The {where} is unavailable: {message}")
        if state == "23505":
            return ConnectorConflictError(f"The {where} reported a conflict: {message}")
        return ConnectorRequestError(f"The {where} refused the statement: {message}")


class SqliteSession(Session):
    """The file opened read-only (`mode=ro`, `query_only`) for sql.query, read-write and
    never created for sql.execute. A progress handler enforces the statement timeout;
    an authorizer refuses ATTACH, which could open any other file."""

    dialect = "sqlite"
    paramstyle = NAMED
    errors = (sqlite3.Error,)
    _interrupted = False  # set by the progress handler when the deadline passed

    def connect(self, connect_timeout: float) -> None:
        path = check_sqlite_file(self.target.path)
        mode = "ro" if self.read_only else "rw"
        self._deadline = math.inf
        self.connection = sqlite3.connect(f"file:{quote(path)}?mode={mode}", uri=True,
                                          timeout=connect_timeout, isolation_level=None)
        if self.read_only:
            self.connection.execute("PRAGMA query_only = ON")
        self.connection.set_authorizer(_refuse_attach)
        self.connection.set_progress_handler(self._progress, SQLITE_PROGRESS_STEPS)
        self.connection.execute("BEGIN")
        self._deadline = time.monotonic() + self.statement_timeout

    def _progress(self) -> int:
        if time.monotonic() > self._deadline:
            self._interrupted = True
            return 1  # SQLite stops the statement: "interrupted"
        return 0

    def error(self, exc: Exception) -> ConnectorError:
        message = " ".join(str(exc).split())[:300]
        name = getattr(exc, "sqlite_errorname", "") or ""
        where = self.target.label
        if self._interrupted:
            return self.timed_out()
        if name.startswith("SQLITE_READONLY") or "readonly database" in message:
            return ConnectorRequestError(READ_ONLY_MESSAGE)
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            return ConnectorUnavailableError(f"The {where} is busy: {message}")
        if name.startswith("SQLITE_CANTOPEN"):
            return ConnectorUnavailableError(f"The {where} cannot be opened: {message}")
        if name == "SQLITE_CONSTRAINT_UNIQUE":
            return ConnectorConflictError(f"The {where} reported a conflict: {message}")
        return ConnectorRequestError(f"The {where} refused the statement: {message}")


def _refuse_attach(action: int, *_args) -> int:
    if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def session_class(dialect: str) -> type[Session]:
    return {"postgresql": PostgresSession, "sqlite": SqliteSession, "mysql": MysqlSession}[dialect]
