"""A private PostgreSQL cluster to crash: `initdb` into a temporary directory, started on a
free loopback port with its unix socket in that directory, stopped in immediate mode (a
crash: no checkpoint, WAL replay on the next start) and started again.

The bench (`python -m bench reliability --chaos`) and tests/reliability crash this
cluster, never a shared server. The server binaries are PostgreSQL's own (`initdb`,
`pg_ctl`, `postgres`), found under /usr/lib/postgresql/<version>/bin (the newest) or in
the directory `ENTITYFLOW_PG_BIN` names. PostgreSQL refuses to run as root: as root the
cluster belongs to, and runs as, the unprivileged `postgres` user (or the user named
by `ENTITYFLOW_PG_USER`), through `runuser`. See docs/reliability.md.

    with PrivateCluster() as cluster:
        url = cluster.url("mydb")         # postgres://postgres@127.0.0.1:<port>/mydb
        cluster.create_database("mydb")
        cluster.crash()                   # pg_ctl stop -m immediate
        cluster.start()                   # replays the WAL
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SERVER_USER = "postgres"  # the database superuser initdb creates (-U), whoever runs it


class ClusterUnavailable(RuntimeError):
    """No PostgreSQL server binaries here, or no unprivileged user to run them as."""


def server_bin() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin that has pg_ctl (or ENTITYFLOW_PG_BIN)."""
    chosen = os.environ.get("ENTITYFLOW_PG_BIN")
    if chosen:
        found = [Path(chosen)]
    else:
        def version(path: Path) -> tuple:
            return tuple(int(p) if p.isdigit() else 0 for p in path.parent.name.split("."))

        found = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    for path in found:
        if (path / "pg_ctl").exists() and (path / "initdb").exists():
            return path
    raise ClusterUnavailable("no PostgreSQL server binaries (initdb, pg_ctl) under "
                             "/usr/lib/postgresql/*/bin; set ENTITYFLOW_PG_BIN")


def available() -> str | None:
    """None when a private cluster can be made here, else why not."""
    try:
        server_bin()
        _run_as()
    except ClusterUnavailable as exc:
        return str(exc)
    return None


def _run_as() -> list[str]:
    """The prefix that runs a server command as an unprivileged user (none if we are one)."""
    if os.geteuid() != 0:
        return []
    name = os.environ.get("ENTITYFLOW_PG_USER", "postgres")
    try:
        pwd.getpwnam(name)
    except KeyError:
        raise ClusterUnavailable(f"running as root and there is no user {name!r} to run "
                                 "PostgreSQL as; set ENTITYFLOW_PG_USER") from None
    if not shutil.which("runuser"):
        raise ClusterUnavailable("running as root and runuser is missing")
    return ["runuser", "-u", name, "--"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateCluster:
    """One throwaway cluster. `settings` go into postgresql.conf (name → value)."""

    def __init__(self, settings: dict | None = None, *, port: int | None = None):
        self.bin = server_bin()
        self.prefix = _run_as()
        self.settings = {"max_connections": 200, "shared_buffers": "64MB", "fsync": "on",
                         **(settings or {})}
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="entityflow-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.crashes = 0
        self._initialised = False

    # -- life cycle ------------------------------------------------------------------

    def __enter__(self) -> PrivateCluster:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.destroy()

    @classmethod
    def started(cls, settings: dict | None = None) -> PrivateCluster:
        """A new cluster, started; destroyed again if it does not start."""
        cluster = cls(settings)
        try:
            cluster.start()
        except Exception:
            cluster.destroy()
            raise
        return cluster

    def start(self, timeout: float = 60) -> None:
        """initdb on first use, then start and wait until it accepts connections (after a
        crash, that is after WAL replay)."""
        if not self._initialised:
            self._initdb()
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        self._pg_ctl("start", "-w", "-t", str(int(timeout)), "-l", str(self.log), "-o", options)
        self.wait_ready(timeout)

    def crash(self) -> None:
        """`pg_ctl stop -m immediate`: every server process quits at once, no checkpoint;
        the next start replays the WAL. Commits not yet written to the WAL are lost."""
        self._pg_ctl("stop", "-m", "immediate", "-w")
        self.crashes += 1

    def stop(self) -> None:
        if self.running():
            self._pg_ctl("stop", "-m", "fast", "-w")

    def destroy(self) -> None:
        try:
            if self.running():
                self._pg_ctl("stop", "-m", "immediate", "-w")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def running(self) -> bool:
        if not self._initialised:
            return False
        done = subprocess.run([*self.prefix, str(self.bin / "pg_ctl"), "status", "-D",
                               str(self.data)], capture_output=True, check=False)
        return done.returncode == 0

    def wait_ready(self, timeout: float = 60) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    # -- use ------------------------------------------------------------------------

    def url(self, database: str = "postgres") -> str:
        return f"postgres://{SERVER_USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def server_log(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    # -- internals --------------------------------------------------------------------

    def _initdb(self) -> None:
        if self.prefix:  # the unprivileged user owns the directory (and runs the server)
            owner = pwd.getpwnam(self.prefix[2])
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
        self._server("initdb", "-D", str(self.data), "-U", SERVER_USER, "-A", "trust",
                     "--no-sync", "-E", "UTF8", "--locale", "C")
        lines = [f"{name} = '{value}'" for name, value in self.settings.items()]
        conf = self.data / "postgresql.auto.conf"
        with open(conf, "a") as handle:  # written as root is fine: the server only reads it
            handle.write("\n".join(lines) + "\n")
        self._initialised = True

    def _pg_ctl(self, *args: str) -> None:
        self._server("pg_ctl", "-D", str(self.data), *args)

    def _server(self, program: str, *args: str) -> None:
        done = subprocess.run([*self.prefix, str(self.bin / program), *args],
                              capture_output=True, text=True, check=False, timeout=120,
                              cwd=self.dir)
        if done.returncode != 0:
            raise RuntimeError(f"{program} {' '.join(args[:1])} failed ({done.returncode}): "
                               f"{done.stderr.strip() or done.stdout.strip()}\n"
                               f"{self.server_log()[-2000:]}")
