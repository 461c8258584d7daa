"""SQL datasources: `sql.query` reads rows, `sql.execute` writes, on the database a `sql`
connection names (PostgreSQL, SQLite, and MySQL when PyMySQL is installed).

Values never enter the SQL text: the statement uses `:name` placeholders and the driver
binds `params` (see `statements`). Each call opens its own connection with a connect
timeout and runs in its own transaction with a statement timeout; `sql.query`'s is
read-only, and `sql.execute` is refused unless the connection's options say
`"allowWrites": true`. Network databases are reached only through the outbound address
guard (integrations.net), SQLite files only inside ENTITYFLOW_SQL_SQLITE_DIRS.
Documented in docs/user-guide/integrations.md ("SQL").
"""

from typing import Any

from integrations.base import Action, ActionResult, Connector, CredentialField
from integrations.exceptions import ConnectorConfigError
from integrations.registry import register
from integrations.sql import targets
from integrations.sql.drivers import session_class
from integrations.sql.statements import prepare
from integrations.sql.values import jsonable

DEFAULT_ROW_LIMIT = 1000
MAX_ROW_LIMIT = 10_000
MAX_TIMEOUT = 120.0  # at most, whatever is asked: below the step lease (150 s by default)
MAX_CONNECT_TIMEOUT = 10.0


def _params_schema(*, rows_help: str) -> dict:
    return {"type": "object", "required": ["sql"], "additionalProperties": False,
            "properties": {
                "sql": {"type": "string", "minLength": 1, "maxLength": 100_000,
                        "description": "One statement; values as :name placeholders."},
                "params": {"type": "object",
                           "description": "Values for the :name placeholders."},
                "rowLimit": {"type": "integer", "minimum": 1, "maximum": MAX_ROW_LIMIT,
                             "description": rows_help},
                "timeout": {"type": "number", "minimum": 0.1, "maximum": MAX_TIMEOUT,
                            "description": "Statement timeout in seconds."},
            }}


@register
class SqlConnector(Connector):
    slug = "sql"
    display_name = "SQL database"
    credential_fields = (
        CredentialField("url", "Database URL", secret=False, help_text=targets.URL_HELP),
        CredentialField("password", "Password", required=False,
                        help_text="The database user's password, stored encrypted."),
    )
    actions = {
        "query": Action(
            "query", _params_schema(rows_help=f"At most this many rows (default "
                                              f"{DEFAULT_ROW_LIMIT})."),
            "Run one read-only statement; returns {rows, columns, rowCount, truncated}.",
            literal_params=("sql",)),
        "execute": Action(
            "execute", _params_schema(rows_help="At most this many RETURNING rows."),
            "Run one writing statement (the connection must allow writes); returns "
            "{rowCount, rows, columns, truncated}.",
            literal_params=("sql",), effect="always"),
    }

    @classmethod
    def validate_credentials(cls, credentials: dict) -> dict[str, list[str]]:
        errors = super().validate_credentials(credentials)
        if "url" not in errors:
            problems = targets.url_errors(credentials.get("url"))
            if problems:
                errors["url"] = problems
        return errors

    @classmethod
    def validate_options(cls, options: dict) -> dict[str, list[str]]:
        errors: dict[str, list[str]] = {}
        if "allowWrites" in options and not isinstance(options["allowWrites"], bool):
            errors["allowWrites"] = ["must be true or false"]
        timeout = options.get("timeout")
        if "timeout" in options and (isinstance(timeout, bool) or not isinstance(
                timeout, int | float) or not 0.1 <= timeout <= MAX_TIMEOUT):
            errors["timeout"] = [f"must be a number of seconds from 0.1 to {MAX_TIMEOUT:g}"]
        return errors

    def test_connection(self) -> dict:
        self._call("SELECT 1", {}, write=False, limit=1, timeout=self._connect_timeout())
        return {"ok": True, "database": self._target().label}

    def query(self, params: dict) -> ActionResult:
        return self._statement(params, write=False)

    def execute(self, params: dict) -> ActionResult:
        if self.options.get("allowWrites") is not True:
            raise ConnectorConfigError(
                "This SQL connection is read-only: sql.execute needs \"allowWrites\": true in "
                "the connection's options.")
        return self._statement(params, write=True)

    # -- one call ------------------------------------------------------------------

    def _statement(self, params: dict, *, write: bool) -> ActionResult:
        limit = int(params.get("rowLimit") or DEFAULT_ROW_LIMIT)
        output = self._call(params["sql"], params.get("params") or {}, write=write,
                            limit=limit, timeout=self._statement_timeout(params))
        return ActionResult(output=output)

    def _call(self, sql: str, values: dict, *, write: bool, limit: int,
              timeout: float) -> dict:
        """One connection, one transaction, one statement; committed only when writing."""
        target = self._target()
        cls = session_class(target.dialect)
        statement = prepare(sql, dialect=target.dialect, paramstyle=cls.paramstyle)
        missing = sorted(set(statement.names) - set(values))
        if missing:
            raise ConnectorConfigError(
                f"SQL: no value for :{', :'.join(missing)} in params.",
                fields={f"params.{name}": ["is used in the SQL but has no value"]
                        for name in missing})
        session = cls(target, read_only=not write, statement_timeout=timeout,
                      row_limit=limit + 1)
        try:
            session.open(self._connect_timeout())
            cursor = session.execute(statement.text, {n: values[n] for n in statement.names})
            output = _fetch(cursor, limit, affected=write)
            session.finish(commit=write)
        except cls.errors as exc:
            raise session.error(exc) from None
        finally:
            session.close()
        return output

    def _target(self) -> targets.Target:
        return targets.parse(self.credentials.get("url"), self.credentials.get("password") or "")

    def _statement_timeout(self, params: dict) -> float:
        value = params.get("timeout") or self.options.get("timeout") or self.timeout
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConnectorConfigError("The SQL connection's options.timeout must be a "
                                       "number of seconds.")
        return min(float(value), MAX_TIMEOUT)

    def _connect_timeout(self) -> float:
        return min(float(self.timeout), MAX_CONNECT_TIMEOUT)


def _fetch(cursor: Any, limit: int, *, affected: bool) -> dict:
    """Rows as objects keyed by column name, at most `limit` of them. `rowCount`: the
    rows a write changed (`affected`), else the rows returned."""
    columns = [str(column[0]) for column in cursor.description or ()]
    batch = cursor.fetchmany(limit + 1) if columns else []
    rows = [dict(zip(columns, map(jsonable, row), strict=True)) for row in batch[:limit]]
    count = max(cursor.rowcount, 0) if affected else len(rows)
    return {"rows": rows, "columns": columns, "rowCount": count, "truncated": len(batch) > limit}

