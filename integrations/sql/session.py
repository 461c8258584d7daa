"""The session every kind of database implements: one connection, one transaction.

Never Django's connection machinery: the user's database is not ours, and a call must
not share a connection, a transaction or a setting with anything else. A session opens
its connection with a connect timeout, starts the transaction (read-only for
`sql.query`) with the statement timeout set, and turns the driver's errors into
ConnectorErrors whose messages name the database, never the password.
"""

import contextlib
import json
from typing import Any

from integrations.exceptions import ConnectorError, ConnectorTimeoutError
from integrations.sql.statements import PYFORMAT
from integrations.sql.targets import Target

READ_ONLY_MESSAGE = ("sql.query runs in a read-only transaction; write with sql.execute on a "
                     "connection whose options say \"allowWrites\": true.")


class Session:
    """One connection and one transaction. Subclasses open them and map errors."""

    dialect = ""
    paramstyle = PYFORMAT
    errors: tuple[type[Exception], ...] = ()

    def __init__(self, target: Target, *, read_only: bool, statement_timeout: float,
                 row_limit: int):
        self.target = target
        self.read_only = read_only
        self.row_limit = row_limit  # rows the caller will fetch at most, plus one
        self.statement_timeout = statement_timeout
        self.connection: Any = None

    def open(self, connect_timeout: float) -> "Session":
        """Connect and start the transaction; `close()` is the caller's, also on failure."""
        self.connect(connect_timeout)
        return self

    def connect(self, connect_timeout: float) -> None:
        raise NotImplementedError

    def adapt(self, value: Any) -> Any:
        """A JSON value as the driver binds it: objects and lists as JSON text."""
        return json.dumps(value) if isinstance(value, dict | list) else value

    def execute(self, text: str, values: dict) -> Any:
        cursor = self.connection.cursor()
        cursor.execute(text, {key: self.adapt(value) for key, value in values.items()})
        return cursor

    def finish(self, *, commit: bool) -> None:
        if commit:
            self.connection.commit()
        else:
            self.connection.rollback()

    def close(self) -> None:
        if self.connection is not None:
            with contextlib.suppress(Exception):  # closing a broken connection may fail too
                self.connection.close()

    def error(self, exc: Exception) -> ConnectorError:
        raise NotImplementedError

    def timed_out(self) -> ConnectorTimeoutError:
        return ConnectorTimeoutError(
            f"The statement ran past its time limit of {self.statement_timeout:g} s and was "
            f"cancelled ({self.target.label}).")
