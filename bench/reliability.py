"""Reliability under load and faults: `python -m bench reliability [--chaos] [--quick]`
(also `python -m bench.reliability [--chaos] [--quick]`).

Saver processes create entities of a dedicated type and move each one new -> received ->
approved, with a data-only update in between (an event that starts nothing). Entering
`received` and entering `approved` each start a process of four steps: `start` fans out
to `left` and `right`, which meet again at `join` (an AND-join). `start`, `left` and
`join` call `effect`, the side effect that is counted: it logs every execution and
applies the effect once per idempotency key, as an outside system honouring the key
would; `right` is a cheap transform that the worker runs inline. Four `qcluster`
processes with one worker each run the steps (Redis broker, PostgreSQL). While the load
runs, an HTTP client publishes events and starts runs through the API (gunicorn).

With --chaos, while the load runs: a worker is SIGKILLed every few seconds and a new one
started, the PostgreSQL connections of every other process are terminated once, Redis is
restarted once (always started again, also when the scenario fails), and PostgreSQL
crashes once: the scenario then runs on a private cluster of its own (bench/pgcluster.py),
stopped in immediate mode (no checkpoint; WAL replay on start) and started again a few
seconds later. Workers and the app server are not restarted: they must recover by
themselves, and the API must answer 503 with Retry-After meanwhile, never 500.
`--pg-crash-only` crashes PostgreSQL and does nothing else, so what the crash costs
(steps run again) is its own. Lost work
is recovered by the sweeper: the harness calls automation.tasks.sweep_all
every few seconds, as the scheduled sweeper does every minute, with a shorter pending
grace (ENTITYFLOW_SWEEP_PENDING_AFTER_SECONDS) so a lost doorbell costs seconds here.

The last line printed is one JSON object {"reliability": {...}}: events, runs_expected,
runs_created, runs_completed, runs_failed, duplicate_effects (effects applied for a step
beyond its first, keyed by run + step + scope: a repeat that sent a new idempotency key),
repeated_executions (executions of a step beyond its first, whatever key they sent: at
least once means a step whose worker died after its side effect runs again), lost
(qualifying events without a run, plus runs not finished when the drain timed out),
unexpected_5xx (5xx answers to the scenario's HTTP traffic, less the retry_later ones),
retry_later (503 answers with Retry-After in the error format: the API's designed answer
to a database connection lost after a commit, or to a database that refuses connections),
workers_killed, pg_crashes (immediate PostgreSQL stops), steps_rerun (step runs claimed more
than once: what the faults cost).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from automation.functions import StepContext, function

ROOT = Path(__file__).resolve().parent.parent
ENTITY_TYPE = "reliability-order"
FLOW = ("new", "received", "approved")
TRIGGERED = {"reliability-received": "received", "reliability-approved": "approved"}
PING_PROCESS, PING_EVENT = "reliability-ping", "reliability.ping"
EFFECT = "reliability.effect"
EFFECTS_ENV = "ENTITYFLOW_RELIABILITY_EFFECTS"
EFFECT_STEPS = ("start", "left", "join")
DATABASE = "bench_reliability"
REDIS_START = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port",
               "{port}", "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
               "--logfile", "/var/log/redis/ci.log"]


@function(EFFECT, description="The side effect the reliability scenario counts, applied "
                              "once per idempotency key.")
def effect(ctx: StepContext) -> dict:
    """Stands for an outside system that honours the idempotency key we send: every call
    is logged (`effects.log`, one line per execution), but the effect itself is applied
    only for a key it has not seen (one file per key in `effects.applied/`, created with
    O_EXCL, so two calls with one key cannot both apply it, whichever process makes them).

    A step re-run after its worker was killed between the side effect and recording the
    outcome calls this again; it must send the same key, and then nothing happens twice."""
    effects = Path(os.environ[EFFECTS_ENV])
    line = f"{ctx.idempotency_key} {os.getpid()}\n".encode()
    _append(effects, line)
    applied = applied_dir(effects)
    applied.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(applied / quote(ctx.idempotency_key, safe=""),
                         os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except FileExistsError:
        pass  # applied before under this key: the outside system does nothing again
    return {"step": ctx.step_id}


def _append(path: Path, line: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)  # one write with O_APPEND: lines from many processes never mix
    finally:
        os.close(fd)


def applied_dir(effects: Path) -> Path:
    """Where `effect` marks each idempotency key it applied (next to the effects log)."""
    return effects.with_name(effects.stem + ".applied")


def steps() -> list[dict]:
    return [
        {"id": "start", "type": "function", "function": EFFECT, "next": ["left", "right"]},
        {"id": "left", "type": "function", "function": EFFECT, "next": "join"},
        {"id": "right", "type": "function", "function": "transform", "next": "join",
         "config": {"params": {"output": {"from": "result.step"}}}},
        {"id": "join", "type": "function", "function": EFFECT},
    ]


def fixtures_ensure() -> None:
    """The entity type and the three processes, through the real services."""
    from automation.services.processes import process_save
    from entities.models import EntityType, Status, Transition

    entity_type, _ = EntityType.objects.get_or_create(
        key=ENTITY_TYPE, defaults={"name": "Reliability order", "schema": {}})
    rows = {}
    for position, key in enumerate(FLOW):
        rows[key], _ = Status.objects.get_or_create(
            entity_type=entity_type, key=key,
            defaults={"label": key.title(), "is_initial": position == 0, "position": position})
    for source, target in zip(FLOW, FLOW[1:], strict=False):
        Transition.objects.get_or_create(entity_type=entity_type, source=rows[source],
                                         target=rows[target])
    for slug, status in TRIGGERED.items():
        trigger = {"type": "status", "config": {"entityType": ENTITY_TYPE, "status": status}}
        process_save(slug=slug, name=slug, entity_type=entity_type,
                     definition={"steps": steps(), "triggers": [trigger]})
    ping = {"type": "event", "config": {"eventType": PING_EVENT}}
    process_save(slug=PING_PROCESS, name=PING_PROCESS,
                 definition={"steps": steps(), "triggers": [ping, {"type": "manual"}]})


# --- savers: separate processes, each moving its own slice of entities ----------------

SAVER_CODE = ("import sys; from bench.reliability import saver_main; "
              "sys.exit(saver_main(sys.argv[1:]))")


def saver_main(argv: list[str]) -> int:
    """`prefix start count`: create and move entities; retry what a fault interrupted."""
    import django

    django.setup()
    from entities.models import EntityType

    prefix, start, count = argv[0], int(argv[1]), int(argv[2])
    entity_type = EntityType.objects.get(key=ENTITY_TYPE)
    tally = Counter()
    for n in range(start, start + count):
        _advance(entity_type, f"{prefix}-{n:06d}", n, tally)
    print(json.dumps({"saved": count, **tally}), flush=True)
    return 0


def _advance(entity_type, reference: str, n: int, tally: Counter) -> None:
    from entities.models import Entity
    from entities.services import entity_create, entity_transition, entity_update

    def fresh():
        return (Entity.objects.select_related("entity_type")
                .filter(entity_type=entity_type, reference=reference).first())

    def create():
        return fresh() or entity_create(entity_type=entity_type, reference=reference,
                                        data={"n": n})

    def move(target: str):
        entity = fresh()
        if FLOW.index(entity.status) < FLOW.index(target):
            entity_transition(entity=entity, to_status=target)

    def note():
        entity = fresh()
        if "note" not in entity.data:
            entity_update(entity=entity, data={"note": f"checked {n}"}, merge=True)

    for op in (create, lambda: move("received"), note, lambda: move("approved")):
        _retrying(op, tally)


def _retrying(op, tally: Counter, attempts: int = 40):
    """A terminated connection or a restarting broker is a fault to outlast, not a bug."""
    from django.db import DatabaseError, connection

    for attempt in range(attempts):
        try:
            return op()
        except DatabaseError:
            tally["db_retries"] += 1
            connection.close()
        except Exception as exc:  # noqa: BLE001  (redis errors, when the broker restarts)
            if "redis" not in type(exc).__module__:
                raise
            tally["broker_retries"] += 1
        time.sleep(min(2.0, 0.05 * 2 ** attempt))
    raise RuntimeError(f"gave up after {attempts} attempts")


# --- processes: workers, savers, faults ------------------------------------------------


class Proc:
    """A subprocess in its own process group (stopped or killed with its children)."""

    def __init__(self, argv: list[str], env: dict, log: Path):
        self.log = open(log, "ab")  # noqa: SIM115  (closed in stop())
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, grace: float = 20) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


def stop_all(procs: list[Proc], grace: float = 10) -> None:
    """SIGTERM every process group at once, then SIGKILL what is left after `grace`."""
    for proc in procs:
        if proc.alive():
            os.killpg(proc.proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
        proc.log.close()


def qcluster(env: dict, log: Path) -> Proc:
    return Proc([sys.executable, "manage.py", "qcluster"], env, log)


class Redis:
    """Restart the broker; `ensure_running` is called in every `finally`."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.url, self.host, self.port = url, parts.hostname or "127.0.0.1", parts.port or 6379

    def local(self) -> bool:
        return self.host in ("127.0.0.1", "localhost", "::1")

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.from_url(self.url, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def restart(self, down_seconds: float = 2.0) -> None:
        try:
            subprocess.run(["redis-cli", "-h", self.host, "-p", str(self.port), "shutdown",
                            "nosave"], capture_output=True, timeout=10, check=False)
            time.sleep(down_seconds)
        finally:
            self.ensure_running()

    def purge(self, key: str) -> None:
        import redis

        try:
            redis.from_url(self.url, socket_timeout=2).delete(key)
        except redis.RedisError:
            pass

    def ensure_running(self) -> None:
        if self.ping():
            return
        argv = [part.format(port=self.port) for part in REDIS_START]
        subprocess.run(argv, capture_output=True, timeout=20, check=False)
        deadline = time.monotonic() + 20
        while not self.ping():
            if time.monotonic() > deadline:
                raise RuntimeError(f"Redis did not come back on port {self.port}")
            time.sleep(0.1)


def terminate_connections() -> int:
    """Terminate every other PostgreSQL connection to this database (workers, savers,
    app servers); returns how many were terminated."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                       "current_database() AND pid <> pg_backend_pid()")
        return sum(1 for (done,) in cursor.fetchall() if done)


# --- the scenario ------------------------------------------------------------------------


@dataclass
class Plan:
    entities: int
    chaos: bool = False
    workers: int = 4
    savers: int = 3
    kill_every: float = 4.0
    min_kills: int = 3
    sweep_every: float = 3.0
    pending_grace: float = 8.0  # ENTITYFLOW_SWEEP_PENDING_AFTER_SECONDS while it runs
    drain_timeout: float = 300.0
    prefix: str = "REL"
    pg_crash: bool = False  # with chaos: crash the private cluster once (Scenario.cluster)
    pg_down_seconds: float = 3.0
    other_faults: bool = True  # with chaos: kill workers, terminate connections, restart Redis


@dataclass
class Outcome:
    figures: dict
    details: dict = field(default_factory=dict)


class Scenario:
    """Drives one load (and chaos) round from this process, which must have Django set up
    on the same database the workers and savers use (`env`)."""

    def __init__(self, plan: Plan, *, env: dict, workdir: Path, http=None, cluster=None):
        self.plan, self.env, self.workdir, self.http = plan, env, workdir, http
        self.cluster = cluster  # a bench.pgcluster.PrivateCluster to crash (plan.pg_crash)
        self.effects = Path(env[EFFECTS_ENV])
        self.redis = Redis(env["REDIS_URL"]) if env.get("REDIS_URL") else None
        self.clusters: list[Proc] = []
        self.details = Counter()
        self.rng = random.Random(7)
        self.spawned = 0

    def run(self) -> Outcome:
        from django.test import override_settings

        with override_settings(ENTITYFLOW_SWEEP_PENDING_AFTER_SECONDS=self.plan.pending_grace):
            return self._run()

    def _run(self) -> Outcome:
        began = time.monotonic()
        savers: list[Proc] = []
        try:
            self.clusters = [self._spawn() for _ in range(self.plan.workers)]
            if self.http:
                self.http.start()
            savers = self._savers()
            faults_over = self._load(savers)
            if self.http:
                self.http.stop()
            finished = self._drain(faults_over)
            self.details["recovery_s"] = round(finished - faults_over, 1)
            self.details["wall_s"] = round(time.monotonic() - began, 1)
        finally:
            if self.redis and self.redis.local():
                self.redis.ensure_running()
            stop_all([*savers, *self.clusters])
        figures = tally(self.effects, http=self.http, killed=self.details["workers_killed"])
        figures["pg_crashes"] = self.details["pg_crashes"]
        return Outcome(figures, dict(self.details))

    def _spawn(self) -> Proc:
        self.spawned += 1
        return qcluster(self.env, self.workdir / f"qcluster-{self.spawned}.log")

    def _savers(self) -> list[Proc]:
        n, k = self.plan.entities, self.plan.savers
        bounds = [(i * n // k, (i + 1) * n // k) for i in range(k)]
        return [Proc([sys.executable, "-c", SAVER_CODE, self.plan.prefix, str(a), str(b - a)],
                     self.env, self.workdir / f"saver-{i}.log") for i, (a, b) in enumerate(bounds)]

    def _load(self, savers: list[Proc]) -> float:
        """Until every saver is done (and, with chaos, every fault has happened)."""
        plan = self.plan
        next_kill = time.monotonic() + plan.kill_every
        next_sweep = time.monotonic() + plan.sweep_every
        others = plan.other_faults
        faults = {"db": not others, "redis": not (others and self.redis and self.redis.local()),
                  "pg": not (plan.pg_crash and self.cluster)}
        if plan.chaos and others and faults["redis"]:
            self.details["redis_restart_skipped"] = 1  # not a local Redis: leave it alone
        if plan.chaos and plan.pg_crash and not self.cluster:
            self.details["pg_crash_skipped"] = 1
        while True:
            now = time.monotonic()
            saving = any(s.alive() for s in savers)
            done = self._progress()
            if plan.chaos and others and now >= next_kill:
                self._kill_one()
                next_kill = now + plan.kill_every
            if plan.chaos and not faults["db"] and (done >= 0.3 or not saving):
                self.details["db_connections_terminated"] += terminate_connections()
                faults["db"] = True
            if plan.chaos and not faults["redis"] and (done >= 0.6 or not saving):
                self.redis.restart()
                self.details["redis_restarts"] += 1
                faults["redis"] = True
            if plan.chaos and not faults["pg"] and (done >= 0.45 or not saving):
                self._crash_postgres()
                faults["pg"] = True
            if now >= next_sweep:
                self._sweep()
                next_sweep = now + plan.sweep_every
            self._replace_dead()
            enough = not plan.chaos or (all(faults.values()) and (
                not others or self.details["workers_killed"] >= plan.min_kills))
            if not saving and enough:
                break
            time.sleep(0.2)
        failed = [s for s in savers if s.proc.returncode]
        if failed:
            raise RuntimeError(f"{len(failed)} saver(s) failed; see saver-*.log")
        return time.monotonic()

    def _progress(self) -> float:
        from django.db import connections

        from entities.models import Entity

        try:
            moved = Entity.objects.filter(entity_type__key=ENTITY_TYPE, status=FLOW[-1]).count()
        except Exception:  # noqa: BLE001  (a crashed database: reconnect next time)
            connections.close_all()
            return 0.0
        return moved / max(1, self.plan.entities)

    def _crash_postgres(self) -> None:
        """Immediate stop (every server process quits, no checkpoint), down for a few
        seconds, start (WAL replay). Nobody else is told: workers, savers and the app
        server find out by themselves. This process drops its broken connection."""
        from django.db import connections

        began = time.monotonic()
        self.cluster.crash()
        self.details["pg_crashes"] += 1
        time.sleep(self.plan.pg_down_seconds)
        self.cluster.start()
        self.details["pg_outage_s"] = round(time.monotonic() - began, 1)
        self.details["pg_back_at"] = time.monotonic()
        connections.close_all()

    def _kill_one(self) -> None:
        victim = self.rng.randrange(len(self.clusters))
        self.clusters[victim].kill()
        self.clusters[victim].log.close()
        self.clusters[victim] = self._spawn()
        self.details["workers_killed"] += 1

    def _replace_dead(self) -> None:
        for i, proc in enumerate(self.clusters):
            if not proc.alive():  # a cluster that died on its own is a finding too
                self.details["workers_died"] += 1
                proc.log.close()
                self.clusters[i] = self._spawn()

    def _sweep(self) -> None:
        from automation.tasks import sweep_all

        try:
            swept = sweep_all()
        except Exception:  # noqa: BLE001  (the broker may be down right now: next time)
            from django.db import connections

            self.details["sweeps_failed"] += 1
            connections.close_all()
            return
        self.details["sweeps"] += 1
        self.details["events_swept"] += swept["events"]
        self.details["doorbells_resent"] += swept["steps"]

    def _drain(self, faults_over: float) -> float:
        deadline = faults_over + self.plan.drain_timeout
        next_sweep = 0.0
        while time.monotonic() < deadline:
            self._replace_dead()
            if time.monotonic() >= next_sweep:
                self._sweep()
                next_sweep = time.monotonic() + self.plan.sweep_every
            if self._settled():
                return time.monotonic()
            time.sleep(0.5)
        self.details["drain_timed_out"] = 1
        return time.monotonic()

    def _settled(self) -> bool:
        from django.db import DatabaseError, connections

        try:
            return all_settled()
        except DatabaseError:  # the database restarting: ask again
            connections.close_all()
            return False


def processes() -> tuple[str, ...]:
    return (*TRIGGERED, PING_PROCESS)


def all_settled() -> bool:
    from automation.models import Run
    from entities.models import EntityEvent

    if EntityEvent.objects.filter(dispatched_at__isnull=True).exists():
        return False
    if Run.objects.filter(process__slug__in=processes()).exclude(status__in=Run.FINISHED).exists():
        return False
    return not missing_runs()


def expected_runs() -> set[tuple[int, str]]:
    """(event id, process slug) for every event that must have started exactly one run."""
    from entities.models import EntityEvent

    by_status = {status: slug for slug, status in TRIGGERED.items()}
    wanted = set()
    rows = EntityEvent.objects.filter(entity_type_key=ENTITY_TYPE).values_list(
        "id", "entered_statuses")
    for event_id, entered in rows.iterator():
        wanted |= {(event_id, by_status[s]) for s in entered or () if s in by_status}
    pings = EntityEvent.objects.filter(type=PING_EVENT).values_list("id", flat=True)
    return wanted | {(event_id, PING_PROCESS) for event_id in pings}


def event_runs() -> Counter:
    from automation.models import Run

    return Counter(Run.objects.filter(process__slug__in=processes(), event__isnull=False)
                   .values_list("event_id", "process__slug"))


def missing_runs() -> set[tuple[int, str]]:
    return expected_runs() - set(event_runs())


def effect_counts(path: Path) -> Counter:
    """Executions per run + step + scope (the idempotency key without its attempt)."""
    counts = Counter()
    if path.exists():
        for line in path.read_text().splitlines():
            key = line.split(" ", 1)[0]
            counts[key.rsplit(":", 1)[0]] += 1
    return counts


def applied_counts(path: Path) -> Counter:
    """Effects applied per run + step + scope: distinct idempotency keys `effect` saw. A
    step whose repeat sent the key of its first execution counts once; one whose key
    changed (the outside system could not tell it was a repeat) counts twice."""
    counts = Counter()
    applied = applied_dir(path)
    if applied.is_dir():
        for marker in applied.iterdir():
            counts[unquote(marker.name).rsplit(":", 1)[0]] += 1
    return counts


def repeats_beyond_attempts(effects: Path) -> list[str]:
    """Repeated effects that no lost attempt explains. A step may run again after its
    worker died (at least once), but never twice on one claim."""
    from automation.models import StepRun

    found = []
    for key, n in effect_counts(effects).items():
        if n < 2:
            continue
        run_id, step_id, scope = key.split(":", 2)
        attempt = (StepRun.objects.filter(run_id=run_id, step_id=step_id, scope=scope)
                   .values_list("attempt", flat=True).first())
        if attempt is None or n > attempt:
            found.append(f"{key} ran {n} times in {attempt} attempts")
    return found


def tally(effects: Path, *, http=None, killed: int = 0) -> dict:
    from automation.models import Run, StepRun
    from entities.models import EntityEvent

    expected, started = expected_runs(), event_runs()
    manual = {str(pk) for pk in Run.objects.filter(process__slug=PING_PROCESS, event__isnull=True)
              .values_list("pk", flat=True)}
    accepted = set(http.accepted_runs) if http else set()
    runs = Run.objects.filter(process__slug__in=processes())
    status = Counter(runs.values_list("status", flat=True))
    unfinished = sum(n for s, n in status.items() if s not in Run.FINISHED)
    applied, executed = applied_counts(effects), effect_counts(effects)
    return {
        "events": EntityEvent.objects.filter(entity_type_key=ENTITY_TYPE).count()
        + EntityEvent.objects.filter(type=PING_EVENT).count(),
        "runs_expected": len(expected) + len(accepted),
        "runs_created": sum(started.values()) + len(manual),
        "runs_completed": status.get(Run.Status.COMPLETED, 0),
        "runs_failed": status.get(Run.Status.FAILED, 0),
        "duplicate_effects": sum(n - 1 for n in applied.values() if n > 1),
        "repeated_executions": sum(n - 1 for n in executed.values() if n > 1),
        "lost": len(expected - set(started)) + len(accepted - manual) + unfinished,
        "unexpected_5xx": http.errors_5xx - http.retry_later if http else 0,
        "retry_later": http.retry_later if http else 0,
        "workers_killed": killed,
        "steps_rerun": StepRun.objects.filter(run__process__slug__in=processes(),
                                              attempt__gt=1).count(),
    }


def checks(figures: dict, effects: Path) -> list[str]:
    """Everything that must hold after a round; empty when it passed."""
    from automation.models import Run
    from entities.models import EntityEvent

    problems = []
    started = event_runs()
    if any(n > 1 for n in started.values()):
        problems.append(f"{sum(n > 1 for n in started.values())} events started more than one run")
    extra = set(started) - expected_runs()
    if extra:
        problems.append(f"{len(extra)} runs started by events that qualify for none")
    undispatched = EntityEvent.objects.filter(dispatched_at__isnull=True).count()
    if undispatched:
        problems.append(f"{undispatched} events left undispatched")
    for key in ("lost", "runs_failed", "unexpected_5xx"):
        if figures[key]:
            problems.append(f"{key} = {figures[key]}")
    if figures["duplicate_effects"]:
        problems.append(f"duplicate_effects = {figures['duplicate_effects']}: a repeated step "
                        "sent a new idempotency key, so its effect happened twice")
    faults = figures["workers_killed"] + figures.get("pg_crashes", 0)
    if figures["repeated_executions"] and not faults:
        problems.append(f"repeated_executions = {figures['repeated_executions']} without any "
                        "fault")
    unexplained = repeats_beyond_attempts(effects)
    if unexplained:
        problems.append(f"{len(unexplained)} steps ran more often than they were claimed, e.g. "
                        f"{unexplained[0]}")
    completed = Run.objects.filter(process__slug__in=processes(), status=Run.Status.COMPLETED)
    counts = applied_counts(effects)
    unseen = [f"{run_id}:{step}:" for run_id in completed.values_list("pk", flat=True)
              for step in EFFECT_STEPS if counts.get(f"{run_id}:{step}:", 0) == 0]
    if unseen:
        problems.append(f"{len(unseen)} completed effect steps left no effect, e.g. {unseen[0]}")
    if figures["runs_completed"] != figures["runs_created"]:
        problems.append(f"{figures['runs_completed']} of {figures['runs_created']} runs completed")
    rerun = figures.get("steps_rerun", 0)
    if rerun and not faults:
        problems.append(f"{rerun} steps ran more than once without any fault")
    return problems


# --- HTTP traffic (bench only): events, cases and triggers through gunicorn -------------


def retry_later(answer) -> bool:
    """A 503 with Retry-After in the one error format: the API saying it lost its database
    connection (after a commit, or twice) and the client should look, then try again."""
    if answer.status_code != 503 or "Retry-After" not in answer.headers:
        return False
    try:
        error = answer.json()["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return isinstance(error, dict) and {"code", "message", "fields"} <= set(error)


class HttpLoad:
    """One client thread: publish a ping event, start a ping run, create a case, read a
    run, round and round. Counts 5xx answers (and among them the retry-later 503s) and
    connection failures separately."""

    def __init__(self, base: str, client: dict):
        self.base, self.client = base, client
        self.errors_5xx, self.requests, self.connection_errors = 0, 0, 0
        self.retry_later = 0
        self.accepted_runs: list[str] = []
        self.statuses = Counter()
        self.failing = Counter()  # "VERB path" of every unexpected 5xx
        self.deferred = Counter()  # "VERB path" of every retry-later 503
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        """Once this client holds a token (the load starts after it: a fault must not
        catch the client before its first request)."""
        import requests

        self.session = requests.Session()
        deadline = time.monotonic() + 120
        while True:
            try:
                answer = self.session.post(f"{self.base}/api/auth/authorize",
                                           json=self.client, timeout=30)
                if answer.status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the HTTP client got no token in 120 s")
            time.sleep(0.5)
        self.session.headers["Authorization"] = f"Bearer {answer.json()['accessToken']}"
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def _loop(self) -> None:
        with self.session as session:
            n = 0
            while not self._stop.is_set():
                n += 1
                self._call(session, "post", "/api/events",
                           {"type": PING_EVENT, "source": "reliability", "data": {"n": n}})
                answer = self._call(session, "post", f"/api/workflow-definitions/{PING_PROCESS}"
                                    "/trigger", {"input": {"n": n}})
                if answer is not None and answer.status_code == 202:
                    self.accepted_runs.append(answer.json()["executionId"])
                    self._call(session, "get", f"/api/executions/{self.accepted_runs[-1]}")
                self._call(session, "post", "/api/cases", {"firstName": f"Load {n}"})
                self._stop.wait(0.05)

    def _call(self, session, verb: str, path: str, body: dict | None = None):
        import requests

        try:
            answer = getattr(session, verb)(f"{self.base}{path}", json=body, timeout=30)
        except requests.RequestException:
            self.connection_errors += 1
            return None
        self.requests += 1
        self.statuses[answer.status_code] += 1
        if answer.status_code >= 500:
            self.errors_5xx += 1
            if retry_later(answer):
                self.retry_later += 1
                self.deferred[f"{verb.upper()} {path}"] += 1
            else:
                self.failing[f"{verb.upper()} {path}"] += 1
        return answer


# --- the command ---------------------------------------------------------------------------


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench reliability",
                                     description="Reliability under load and faults.")
    parser.add_argument("--chaos", action="store_true",
                        help="kill workers, terminate database connections, restart Redis, "
                             "crash PostgreSQL (a private cluster) once")
    parser.add_argument("--pg-crash-only", action="store_true",
                        help="with --chaos: only the PostgreSQL crash (what it costs alone)")
    parser.add_argument("--quick", action="store_true", help="500 entities instead of 5,000")
    parser.add_argument("--entities", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def bench_urls(name: str = DATABASE) -> tuple[str, str]:
    """(the bench database `name` on BENCH_POSTGRES_URL's server, the Redis URL)."""
    base = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    database = urlunsplit(urlsplit(base)._replace(path=f"/{name}"))
    redis_url = (os.environ.get("BENCH_REDIS_URL") or os.environ.get("REDIS_URL")
                 or "redis://127.0.0.1:6379/0")
    return database, redis_url


def private_cluster():
    """A started PostgreSQL cluster of the bench's own (bench/pgcluster.py), tuned like a
    small server: the crash must cost what it would cost there."""
    from bench.pgcluster import PrivateCluster

    return PrivateCluster.started({"max_connections": 200, "shared_buffers": "128MB"})


def bench_database(url: str, *, create: bool) -> None:
    """Drop the database `url` names (and create it afresh when `create`)."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))
        if create:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def environment(database_url: str, redis_url: str, workdir: Path) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ENTITYFLOW_")}
    env.update({
        "DJANGO_SETTINGS_MODULE": "config.settings.local", "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "Q_CLUSTER_NAME": os.environ.get("BENCH_CLUSTER_NAME", "entityflow-bench-reliability"),
        "Q_WORKERS": "1", "Q_TIMEOUT": "15", "Q_RETRY": "60", "DEBUG": "0",
        "LOG_LEVEL": "WARNING", "ENTITYFLOW_STEP_LEASE_SECONDS": "20",
        "ENTITYFLOW_FUNCTION_MODULES": "bench.reliability",
        EFFECTS_ENV: str(workdir / "effects.log"), "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
    })
    return env


def gunicorn_server(env: dict, workdir: Path, *options: str,
                    timeout: float = 60) -> tuple[Proc, str]:
    """gunicorn serving the app on a free loopback port, with `options` (e.g. `-c
    config/gunicorn.py`, or `--workers 2`); returns it and its base URL once it listens."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    argv = [str(Path(sys.executable).parent / "gunicorn"), *options, "config.wsgi:application",
            "--bind", f"127.0.0.1:{port}", "--log-level", "warning"]
    server = Proc(argv, env, workdir / "gunicorn.log")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return server, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"gunicorn did not listen in {timeout:g} s")


def django_setup(env: dict, client: str = "reliability-load", fixtures=None) -> dict:
    """Django on the bench database: migrate, the scenario's data (`fixtures`, by default
    this bench's), an API client named `client` (its key and secret)."""
    import io

    os.environ.clear()
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    from bench.env import migrate_all

    migrate_all()
    from automation.store.doorbell import _broker

    _broker().connection.delete(_broker().list_key)
    (fixtures or fixtures_ensure)()
    out = io.StringIO()
    call_command("create_api_client", client, "--json", "--rate-limit", "0", stdout=out)
    printed = json.loads(out.getvalue().strip().splitlines()[-1])
    return {"key": printed["key"], "secret": printed["secret"]}


def summary(outcome: Outcome, plan: Plan, http: HttpLoad | None, problems: list[str]) -> str:
    f, d = outcome.figures, outcome.details
    lines = [f"entityflow reliability — {plan.entities} entities, {plan.workers} qcluster "
             f"workers, {plan.savers} saver processes, PostgreSQL + Redis broker"
             + (", chaos" if plan.chaos else ""),
             f"  events {f['events']}, runs expected {f['runs_expected']}, created "
             f"{f['runs_created']}, completed {f['runs_completed']}, failed {f['runs_failed']}",
             f"  duplicate effects {f['duplicate_effects']}, repeated executions "
             f"{f['repeated_executions']}"
             + (" (steps run again after a fault cut them off mid-step; the same "
                "idempotency key each time)"
                if f["repeated_executions"] and not f["duplicate_effects"] else "")
             + f", lost {f['lost']}, "
             f"workers killed {f['workers_killed']}, workers died on their own "
             f"{d.get('workers_died', 0)}",
             f"  faults: db connections terminated {d.get('db_connections_terminated', 0)}, "
             f"redis restarts {d.get('redis_restarts', 0)}, PostgreSQL crashes "
             f"{f.get('pg_crashes', 0)}"
             + (f" (down {d.get('pg_outage_s')} s from the immediate stop to accepting "
                f"connections again)" if f.get("pg_crashes") else "")
             + f"; steps run again {f.get('steps_rerun', 0)}",
             f"  sweeper: {d.get('sweeps', 0)} sweeps ({d.get('sweeps_failed', 0)} failed), "
             f"{d.get('events_swept', 0)} events and {d.get('doorbells_resent', 0)} step "
             f"doorbells re-sent",
             f"  time: {d.get('wall_s')} s in all, settled {d.get('recovery_s')} s after the "
             f"load{' and faults' if plan.chaos else ''} stopped"]
    if http:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(http.statuses.items()))
        lines.append(f"  http: {http.requests} answers ({statuses}), {http.errors_5xx} 5xx "
                     f"({http.retry_later} retry later: 503 with Retry-After in the error "
                     f"format), {http.connection_errors} connection errors")
        for call, n in http.failing.most_common():
            lines.append(f"    5xx: {n} × {call}")
        for call, n in http.deferred.most_common():
            lines.append(f"    retry later: {n} × {call}")
        extra = f["runs_created"] - f["runs_expected"]
        if extra > 0:
            lines.append(f"    {extra} runs were started by requests answered 5xx (committed, "
                         "then the answer failed)")
    lines.append("  verdict: " + ("PASS" if not problems else "FAIL — " + "; ".join(problems)))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = _parse(argv)
    entities = args.entities or (500 if args.quick else 5000)
    # The sweeper's production cadence (every minute, 60 s grace) at full size: quicker
    # sweeps re-send the whole backlog again and again (see steps_sweep). --quick sweeps
    # every 10 s with a 30 s grace so a lost doorbell costs seconds, not a minute.
    cadence = {"sweep_every": 10.0, "pending_grace": 30.0} if entities <= 1000 else \
        {"sweep_every": 60.0, "pending_grace": 60.0}
    plan = Plan(entities=entities, chaos=args.chaos, savers=4, **cadence,
                drain_timeout=300 if args.quick else 1800, pg_crash=args.chaos,
                other_faults=not args.pg_crash_only)
    workdir = Path(os.environ.get("BENCH_WORKDIR") or ROOT / "var" / "bench" / "reliability")
    workdir.mkdir(parents=True, exist_ok=True)
    for old in workdir.glob("*.log"):
        old.unlink()
    shutil.rmtree(workdir / "effects.applied", ignore_errors=True)
    database_url, redis_url = bench_urls()
    redis = Redis(redis_url)
    cluster = None
    try:
        if plan.pg_crash:  # a server of our own to crash, never a shared one
            cluster = private_cluster()
            database_url = cluster.url(DATABASE)
        bench_database(database_url, create=True)
        if not redis.ping():
            raise RuntimeError(f"Redis is not answering at {redis_url}")
    except Exception as exc:  # noqa: BLE001
        print(f"reliability: needs PostgreSQL and Redis: {exc}", file=sys.stderr)
        print(json.dumps({"reliability": {"error": str(exc)}}))
        if cluster:
            cluster.destroy()
        return 2
    env = environment(database_url, redis_url, workdir)
    server = http = None
    try:
        client = django_setup(env)
        server, base = gunicorn_server(env, workdir, "--workers", "2")
        http = HttpLoad(base, client)
        outcome = Scenario(plan, env=env, workdir=workdir, http=http, cluster=cluster).run()
        problems = checks(outcome.figures, Path(env[EFFECTS_ENV]))
    except Exception as exc:  # noqa: BLE001  (the last line is JSON either way)
        import traceback

        traceback.print_exc()
        print(json.dumps({"reliability": {"error": f"{type(exc).__name__}: {exc}"}}))
        return 1
    finally:
        if server:
            server.stop()
        if redis.local():
            redis.ensure_running()
        redis.purge(f"django_q:{env['Q_CLUSTER_NAME']}:q")  # doorbells of a dropped database
        from django.db import connections

        connections.close_all()
        if cluster:
            shutil.copy(cluster.log, workdir / "postgresql.log")
            cluster.destroy()
        else:
            bench_database(database_url, create=False)
    print(summary(outcome, plan, http, problems))
    print(json.dumps({"reliability": outcome.figures}))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
