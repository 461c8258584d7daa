"""The bench's own databases and environment: nothing here touches a developer's data.

The driver process sets the environment, creates a fresh database, then calls
`django.setup()`; every worker and app-server subprocess inherits the same environment.
"""

import os
import platform
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "bench"
LOGS = VAR / "logs"
CLUSTER_NAME = "entityflow-bench"
SETTINGS = "config.settings.local"
DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/bench_entityflow"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class Options:
    db: str = "sqlite"
    broker: str = "orm"
    quick: bool = False
    profile: bool = False

    @property
    def database_url(self) -> str:
        if self.db == "sqlite":
            return f"sqlite:///{VAR / 'bench.sqlite3'}"
        return os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL)

    @property
    def redis_url(self) -> str:
        if self.broker != "redis":
            return ""
        return os.environ.get("BENCH_REDIS_URL") or os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL

    @property
    def label(self) -> str:
        return f"{'SQLite' if self.db == 'sqlite' else 'PostgreSQL'} + {self.broker.upper()} broker"


def environment(opts: Options) -> dict[str, str]:
    """What the driver and every subprocess run with (production-like: DEBUG off)."""
    env = dict(os.environ)
    env.pop("REDIS_URL", None)
    env.update({
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "DATABASE_URL": opts.database_url,
        "Q_CLUSTER_NAME": os.environ.get("BENCH_CLUSTER_NAME", CLUSTER_NAME),  # its queue
        "Q_WORKERS": "2",
        "DEBUG": "0",
        "LOG_LEVEL": "WARNING",
        "ENTITYFLOW_ENGINE_ENABLED": "1",
        # the e2e process's plain Python function step (bench/functions.py)
        "ENTITYFLOW_FUNCTION_MODULES": ",".join(
            m for m in (os.environ.get("ENTITYFLOW_FUNCTION_MODULES"), "bench.functions") if m),
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
    })
    if opts.redis_url:
        env["REDIS_URL"] = opts.redis_url
    return env


def database_create(opts: Options) -> None:
    VAR.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    if opts.db == "sqlite":
        _sqlite_remove()
        return
    _postgres_admin(opts, "DROP DATABASE IF EXISTS {name} WITH (FORCE)", "CREATE DATABASE {name}")


def database_drop(opts: Options) -> None:
    if opts.db == "sqlite":
        _sqlite_remove()
    else:
        _postgres_admin(opts, "DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _sqlite_remove() -> None:
    """The database's file and the task queue's beside it (config/queue.py)."""
    for name in ("bench.sqlite3", "bench-queue.sqlite3"):
        for suffix in ("", "-wal", "-shm", "-journal"):
            path = VAR / f"{name}{suffix}"
            if path.exists():
                path.unlink()


def _postgres_admin(opts: Options, *statements: str) -> None:
    import psycopg
    from psycopg import sql

    parts = urlsplit(opts.database_url)
    name = parts.path.lstrip("/")
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(sql.SQL(statement).format(name=sql.Identifier(name)))


def django_start(opts: Options) -> None:
    """Point this process at the bench database, set Django up and migrate."""
    env = environment(opts)  # before clearing: it reads BENCH_POSTGRES_URL and friends
    os.environ.clear()
    os.environ.update(env)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    migrate_all()


def migrate_all() -> None:
    """Every database, the task queue's own (SQLite) first, as `manage.py migrate` does
    from the command line (automation/management/commands/migrate.py)."""
    from django.conf import settings
    from django.core.management import call_command

    for alias in sorted(settings.DATABASES, key=lambda alias: alias == "default"):
        call_command("migrate", verbosity=0, interactive=False, database=alias)


def machine(opts: Options) -> dict:
    """The machine, described generically (read at run time)."""
    import django

    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "ram_gb": round(mem_kb / 1024 / 1024, 1) if mem_kb else None,
        "python": platform.python_version(),
        "django": django.get_version(),
        "database": _database_version(),
        "broker": _broker_version(opts),
        "setup": opts.label,
    }


def _database_version() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("select sqlite_version()")
            return f"SQLite {cursor.fetchone()[0]}"
        cursor.execute("show server_version")
        return f"PostgreSQL {cursor.fetchone()[0].split()[0]}"


def _broker_version(opts: Options) -> str:
    if opts.broker == "orm":
        return "django-q2 ORM broker"
    from django_q.brokers import get_broker

    return f"django-q2 {get_broker().info()} broker"


def have(tool: str) -> bool:
    return shutil.which(tool, path=str(Path(sys.executable).parent)) is not None
