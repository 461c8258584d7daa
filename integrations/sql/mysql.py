"""MySQL and MariaDB through PyMySQL, when it is installed (it is not a dependency).

The statement timeout is the server's `max_execution_time` (MySQL 5.7.8+; it covers
SELECTs) backed by the client's read timeout, which also ends a write that hangs.
"""

import math

from integrations.exceptions import (
    ConnectorAuthError,
    ConnectorConfigError,
    ConnectorConflictError,
    ConnectorError,
    ConnectorRequestError,
    ConnectorUnavailableError,
)
from integrations.net import check_host
from integrations.sql.session import READ_ONLY_MESSAGE, Session

try:
    import pymysql
except ImportError:  # the connector says so when a mysql:// connection is used
    pymysql = None

QUERY_TIMEOUT = {3024, 1969}  # MySQL max_execution_time, MariaDB max_statement_time
READ_ONLY = {1792}
ACCESS_DENIED = {1044, 1045, 1698}
UNAVAILABLE = {1040, 1205, 1213, 2002, 2003, 2006, 2013}
DUPLICATE = {1062}


class MysqlSession(Session):
    dialect = "mysql"
    errors = (pymysql.Error,) if pymysql else ()

    def connect(self, connect_timeout: float) -> None:
        if pymysql is None:
            raise ConnectorConfigError("MySQL connections need the PyMySQL driver "
                                       "(pip install PyMySQL) in the workers.")
        target = self.target
        address = check_host(target.host, target.port)
        self.connection = pymysql.connect(
            host=address or target.host, port=target.port, user=target.user or None,
            password=target.password, database=target.database, autocommit=False,
            connect_timeout=max(1, math.ceil(connect_timeout)),
            read_timeout=math.ceil(self.statement_timeout) + 1,
            write_timeout=math.ceil(self.statement_timeout) + 1,
            charset=target.query.get("charset", "utf8mb4"))
        cursor = self.connection.cursor()
        cursor.execute("SET SESSION max_execution_time = %s, sql_select_limit = %s",
                       [max(1, round(self.statement_timeout * 1000)), self.row_limit])
        cursor.execute("START TRANSACTION " + ("READ ONLY" if self.read_only else "READ WRITE"))

    def error(self, exc: Exception) -> ConnectorError:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
        message = " ".join(str(exc.args[-1] if exc.args else exc).split())[:300]
        where = self.target.label
        if code in QUERY_TIMEOUT:
            return self.timed_out()
        if code in READ_ONLY:
            return ConnectorRequestError(READ_ONLY_MESSAGE)
        if code in ACCESS_DENIED:
            return ConnectorAuthError(f"The {where} rejected the credentials: {message}")
        if code in UNAVAILABLE:
            return ConnectorUnavailableError(f"The {where} is unavailable: {message}")
        if code in DUPLICATE:
            return ConnectorConflictError(f"The {where} reported a conflict: {message}")
        return ConnectorRequestError(f"The {where} refused the statement: {message}")
