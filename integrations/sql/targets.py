"""The database a `sql` connection names: its URL parsed once, checked before connecting.

`postgresql://user@host:5432/dbname`, `mysql://user@host:3306/dbname` and
`sqlite:///absolute/path/to/file.sqlite3`. The password is a credential of its own
(encrypted at rest, redacted from errors), so a URL that carries one is refused: the URL
is shown in the admin. Nothing else of the URL reaches the driver except the names below,
so a `?host=/socket` or `?options=…` in it cannot redirect or reconfigure the connection.
"""

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from django.conf import settings

from integrations.exceptions import ConnectorConfigError, OutboundBlockedError

SCHEMES = {"postgresql": "postgresql", "postgres": "postgresql", "mysql": "mysql",
           "sqlite": "sqlite"}
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}
# URL query keys passed on to the driver: how to encrypt, never where to connect.
PASSED_QUERY_KEYS = {"postgresql": {"sslmode"}, "mysql": {"charset"}, "sqlite": set()}
URL_HELP = ("postgresql://user@host:5432/dbname, mysql://user@host/dbname or "
            "sqlite:///absolute/path/file.sqlite3 (the password goes in its own field)")


@dataclass(frozen=True)
class Target:
    dialect: str
    host: str = ""
    port: int = 0
    database: str = ""
    user: str = ""
    password: str = field(default="", repr=False)
    path: str = ""
    query: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        """Where, for messages: never the password."""
        if self.dialect == "sqlite":
            return f"sqlite file {self.path}"
        return f"{self.dialect} database {self.database} on {self.host}:{self.port}"


def url_errors(url: object) -> list[str]:
    """Why `url` is not a usable database URL (empty when it is)."""
    try:
        parse(url, "")
    except ConnectorConfigError as err:
        return [err.message]
    return []


def parse(url: object, password: str) -> Target:
    if not isinstance(url, str) or not url.strip():
        raise ConnectorConfigError(f"A database URL is required: {URL_HELP}.")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ConnectorConfigError(f"The database URL is not valid: {URL_HELP}.") from None
    dialect = SCHEMES.get(parts.scheme.lower())
    if dialect is None:
        raise ConnectorConfigError(
            f"Unsupported database URL scheme {parts.scheme or 'none'!r}: {URL_HELP}.")
    if parts.password is not None:
        raise ConnectorConfigError(
            "Put the database password in the Password field, not in the URL "
            "(the URL is shown in the admin; the password is stored encrypted).")
    query = dict(parse_qsl(parts.query))
    unknown = sorted(set(query) - PASSED_QUERY_KEYS[dialect])
    if unknown:
        raise ConnectorConfigError(f"The database URL may not set {', '.join(unknown)}.")
    if dialect == "sqlite":
        return Target("sqlite", path=_sqlite_path(parts.netloc, parts.path))
    host = parts.hostname or ""
    database = unquote(parts.path.lstrip("/"))
    if not host or host.startswith("/") or not database:
        raise ConnectorConfigError(
            f"A {dialect} URL names its host and database: {URL_HELP}.")
    return Target(dialect, host=host, port=port or DEFAULT_PORTS[dialect], database=database,
                  user=unquote(parts.username or ""), password=password, query=query)


def _sqlite_path(netloc: str, path: str) -> str:
    if netloc or not path.startswith("/") or path == "/":
        raise ConnectorConfigError(
            "A SQLite URL names an absolute file path: sqlite:///var/data/shop.sqlite3.")
    return str(Path("/" + unquote(path).lstrip("/")))


def check_sqlite_file(path: str) -> str:
    """The resolved path, when it lies in a directory of ENTITYFLOW_SQL_SQLITE_DIRS and is
    not one of the application's own databases: the file equivalent of the outbound
    address guard, since a SQLite URL can name any file the worker can read."""
    resolved = Path(path).resolve()
    allowed = _setting_list("ENTITYFLOW_SQL_SQLITE_DIRS")
    if not any(resolved.is_relative_to(Path(root).resolve()) for root in allowed):
        raise OutboundBlockedError(
            f"SQLite file {path} refused: it is not inside a directory listed in "
            "ENTITYFLOW_SQL_SQLITE_DIRS.")
    own = {Path(str(db.get("NAME") or "")).resolve() for db in settings.DATABASES.values()
           if "sqlite" in str(db.get("ENGINE", "")) and db.get("NAME")}
    if resolved in own:
        raise OutboundBlockedError(f"SQLite file {path} refused: it is the application's own "
                                   "database.")
    if not resolved.is_file():
        raise ConnectorConfigError(f"SQLite file {path} does not exist.")
    return str(resolved)


def _setting_list(name: str) -> list[str]:
    raw = getattr(settings, name, None) or []
    if isinstance(raw, str):
        raw = raw.split(",")
    return [str(entry).strip() for entry in raw if str(entry).strip()]
