"""Real worker and app-server processes, and what the bench reads about them from /proc."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench.env import LOGS, ROOT, Options, environment


class Proc:
    """A subprocess in its own process group (stopped with its children)."""

    def __init__(self, name: str, argv: list[str], opts: Options, **extra_env: str):
        self.name = name
        self.log = open(LOGS / f"{name}.log", "ab")  # noqa: SIM115  (closed in stop())
        env = {**environment(opts), **extra_env}
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 20) -> None:
        """SIGTERM to the leader only (qcluster and gunicorn then stop their own children
        in order); whatever is left of the group after `grace` is killed."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        self.log.close()


def qcluster(opts: Options, name: str = "qcluster") -> Proc:
    """`manage.py qcluster` with 2 workers; returns once its workers are up."""
    proc = Proc(name, [sys.executable, "manage.py", "qcluster"], opts)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"qcluster exited; see {name}.log under var/bench/logs")
        if len(descendants(proc.pid)) >= 4:  # sentinel + 2 workers + monitor/pusher
            time.sleep(0.5)
            return proc
        time.sleep(0.1)
    raise RuntimeError("qcluster did not start its workers in 60 s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gunicorn(opts: Options, port: int, **extra_env: str) -> Proc:
    """gunicorn as docs/operating.md recommends it (config/gunicorn.py), on `port`."""
    argv = [str(Path(sys.executable).parent / "gunicorn"), "-c", "config/gunicorn.py",
            "config.wsgi:application", "--bind", f"127.0.0.1:{port}", "--log-level", "warning"]
    proc = Proc("gunicorn", argv, opts, **extra_env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError("gunicorn exited; see gunicorn.log under var/bench/logs")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("gunicorn did not listen in 30 s")


def cpu_seconds(pid: int) -> float:
    """The process's CPU time so far (user + system), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (the qcluster sentinel, workers, monitor, pusher)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def peak_rss_mb(pids: list[int]) -> dict[int, float]:
    """VmHWM (peak resident set) of each live process, in MB."""
    peaks = {}
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks[pid] = int(line.split()[1]) / 1024
        except OSError:
            continue
    return peaks


def quiesce() -> None:
    """Between scenarios: an empty queue and no unfinished step anywhere, so the minutely
    sweeper of the next cluster does not ring for work a previous scenario left behind."""
    from django.db import connections

    from automation.models import Run, StepRun

    queue_purge()
    StepRun.objects.filter(status__in=StepRun.ACTIVE).update(status=StepRun.Status.CANCELLED)
    Run.objects.exclude(status__in=Run.FINISHED).update(status=Run.Status.CANCELLED)
    for alias in connections:  # fold SQLite's write-ahead logs back in now, not mid-scenario
        if connections[alias].vendor == "sqlite":
            with connections[alias].cursor() as cursor:
                cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def queue_purge() -> None:
    """Empty the bench's queue (ORM rows, or the Redis lists of every priority and the
    delayed doorbells: automation.store.queues) between scenarios."""
    from django.conf import settings
    from django_q.brokers import get_broker

    broker = get_broker()
    if settings.Q_CLUSTER.get("redis"):
        broker.delete_queue()
    else:
        from django_q.models import OrmQ

        OrmQ.objects.all().delete()
