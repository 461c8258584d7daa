"""A steady mixed load for a long time: `python -m bench soak --minutes N`.

On PostgreSQL and the Redis broker (BENCH_POSTGRES_URL, BENCH_REDIS_URL or REDIS_URL, as
the other benches; a database of its own, dropped at the end): gunicorn (config/gunicorn.py)
and two `qcluster` processes of two workers each, then, at a steady rate for N minutes:

- saves: entities created and moved new -> received through the services (each move
  starts a 2-step process), from this process;
- API triggers: `POST /api/workflow-definitions/{id}/trigger` of a 3-step process, then
  `GET /api/executions/{id}`, and `POST /api/events`;
- webhooks: `POST /hooks/soak?token=…` (a webhook trigger, 2 steps);
- approvals: a process whose `human` step waits for an approval, decided through
  `GET /api/approvals` and `POST /api/approvals/{id}/decide`;
- schedules: a process with a schedule trigger every minute (the workers' scheduler).

Retention is compressed in time so that it shows within the run: every minute the harness
prunes (automation.services.retention.prune) as if each kind were kept for
`--keep-minutes` (10) instead of days. Reported: RSS of every gunicorn and qcluster
process (the masters, workers, monitor, pusher) one minute in and at the end; p50/p99 of
the HTTP requests per 5-minute window; row counts per table at the end of each window;
the machine's load average. The last line is one JSON object {"soak": {...}}; the verdict
is PASS when every process's RSS and the p99 of every window stay within 15 % (of the
first sample, of the lowest window) and no table but entities grows in the last window
by more than 15 %.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

from bench.procs import descendants
from bench.reliability import (
    Proc,
    bench_database,
    bench_urls,
    django_setup,
    environment,
    gunicorn_server,
    stop_all,
)

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "bench_soak"
WINDOW_S = 300
TOKEN = "soak-webhook-token-0123456789"
APPROVER = "soak@example.com"
TABLES = ("entities_entity", "entities_entityevent", "automation_run", "automation_steprun",
          "automation_approvalrequest", "automation_inbounddelivery",
          "automation_webhookdelivery", "django_q_task", "django_q_ormq")
TRANSFORM = {"id": "t", "type": "function", "function": "transform",
             "config": {"params": {"output": {"n": "input.n"}}}}


def _steps(n: int) -> list[dict]:
    ids = [f"s{i}" for i in range(n)]
    return [{**TRANSFORM, "id": step, **({"next": ids[i + 1]} if i + 1 < n else {})}
            for i, step in enumerate(ids)]


def fixtures_ensure() -> None:
    from automation.services.processes import process_save
    from entities.models import EntityType, Status, Transition

    entity_type, _ = EntityType.objects.get_or_create(
        key="soak-order", defaults={"name": "Soak order", "schema": {}})
    rows = {}
    for position, key in enumerate(("new", "received")):
        rows[key], _ = Status.objects.get_or_create(
            entity_type=entity_type, key=key,
            defaults={"label": key.title(), "is_initial": position == 0, "position": position})
    Transition.objects.get_or_create(entity_type=entity_type, source=rows["new"],
                                     target=rows["received"])
    process_save(slug="soak-received", name="Soak received", entity_type=entity_type,
                 definition={"steps": _steps(2), "triggers": [
                     {"type": "status", "config": {"entityType": "soak-order",
                                                   "status": "received"}}]})
    process_save(slug="soak-api", name="Soak API", definition={
        "steps": _steps(3), "triggers": [{"type": "manual"}]})
    process_save(slug="soak-hook", name="Soak webhook", definition={
        "steps": _steps(2), "triggers": [{"type": "webhook", "config": {
            "path": "/soak", "token": TOKEN}}]})
    process_save(slug="soak-approval", name="Soak approval", definition={
        "steps": [{"id": "ask", "type": "human", "next": "after",
                   "config": {"approvers": [APPROVER]}},
                  {**TRANSFORM, "id": "after"}],
        "triggers": [{"type": "manual"}]})
    process_save(slug="soak-schedule", name="Soak schedule", definition={
        "steps": _steps(2), "triggers": [{"type": "schedule", "config": {"cron": "* * * * *"}}]})


# --- measuring ---------------------------------------------------------------------------


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def processes(servers: dict[str, Proc]) -> dict[str, int]:
    """label -> pid for every gunicorn and qcluster process (masters and children)."""
    found = {}
    for label, proc in servers.items():
        found[label] = proc.proc.pid
        for n, pid in enumerate(sorted(descendants(proc.proc.pid)), 1):
            found[f"{label}/child-{n}"] = pid
    return found


def p99(values: list[float], q: float = 0.99) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Latencies:
    def __init__(self, began: float, window_s: int = WINDOW_S):
        self.began, self.window_s = began, window_s
        self.lock = threading.Lock()
        self.windows: dict[int, list[float]] = defaultdict(list)
        self.errors: dict[int, int] = defaultdict(int)
        self.statuses: dict[int, int] = defaultdict(int)

    def add(self, ms: float, status: int) -> None:
        window = int((time.monotonic() - self.began) // self.window_s)
        with self.lock:
            self.windows[window].append(ms)
            self.statuses[status] += 1
            if status >= 500:
                self.errors[window] += 1


# --- load ----------------------------------------------------------------------------------


class Load:
    """The client threads; each paces itself to its rate (requests or saves per second)."""

    def __init__(self, base: str, client: dict, latencies: Latencies, rates: dict):
        self.base, self.client, self.latencies, self.rates = base, client, latencies, rates
        self.stop = threading.Event()
        self.counts: dict[str, int] = defaultdict(int)
        self.failures: dict[str, int] = defaultdict(int)
        self.threads = [threading.Thread(target=self._paced, args=(name, fn), daemon=True)
                        for name, fn in (("saves", self._save), ("api", self._api),
                                         ("webhooks", self._webhook),
                                         ("approvals", self._approval))]

    def start(self) -> None:
        import requests

        self.session = requests.Session()  # one per thread below; this one gets the token
        token = self.session.post(f"{self.base}/api/auth/authorize", json=self.client,
                                  timeout=30).json()["accessToken"]
        self.headers = {"Authorization": f"Bearer {token}"}
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    def _paced(self, name: str, fn) -> None:
        import requests

        session = requests.Session()
        session.headers.update(self.headers)
        every = 1.0 / self.rates[name]
        rng = random.Random(name)
        n = 0
        next_at = time.monotonic()
        while not self.stop.is_set():
            n += 1
            try:
                fn(session, n, rng)
                self.counts[name] += 1
            except Exception as exc:  # noqa: BLE001  (counted and shown; the load goes on)
                self.failures[f"{name}: {type(exc).__name__}: {str(exc)[:80]}"] += 1
                from django.db import connections

                connections.close_all()
            next_at += every
            self.stop.wait(max(0.0, next_at - time.monotonic()))

    def _http(self, session, verb: str, path: str, body=None, *, expect=(200, 201, 202)):
        started = time.monotonic()
        answer = getattr(session, verb)(f"{self.base}{path}", json=body, timeout=60)
        self.latencies.add((time.monotonic() - started) * 1000, answer.status_code)
        if answer.status_code not in expect:
            raise RuntimeError(f"{verb.upper()} {path.split('?')[0]} answered "
                               f"{answer.status_code}")
        return answer

    def _save(self, session, n: int, rng) -> None:
        from entities.models import EntityType
        from entities.services import entity_create, entity_transition

        entity_type = EntityType.objects.get(key="soak-order")
        entity = entity_create(entity_type=entity_type, reference=f"SOAK-{n:07d}",
                               data={"n": n})
        entity_transition(entity=entity, to_status="received")

    def _api(self, session, n: int, rng) -> None:
        answer = self._http(session, "post", "/api/workflow-definitions/soak-api/trigger",
                            {"input": {"n": n}})
        self._http(session, "get", f"/api/executions/{answer.json()['executionId']}")
        self._http(session, "post", "/api/events",
                   {"type": "soak.ping", "source": "soak", "data": {"n": n}})

    def _webhook(self, session, n: int, rng) -> None:
        self._http(session, "post", f"/hooks/soak?token={TOKEN}", {"n": n})

    def _approval(self, session, n: int, rng) -> None:
        self._http(session, "post", "/api/workflow-definitions/soak-approval/trigger",
                   {"input": {"n": n}})
        pending = self._http(session, "get", "/api/approvals?limit=20").json()
        for item in pending.get("results", [])[:2]:
            self._http(session, "post", f"/api/approvals/{item['id']}/decide",
                       {"approved": True, "decidedBy": APPROVER}, expect=(200, 409))


# --- the run -------------------------------------------------------------------------------


def row_counts() -> dict[str, int]:
    from django.db import connection

    counts = {}
    with connection.cursor() as cursor:
        for table in TABLES:
            cursor.execute(f"SELECT count(*) FROM {connection.ops.quote_name(table)}")  # noqa: S608
            counts[table] = cursor.fetchone()[0]
    return counts


def prune_compressed(keep_minutes: float) -> dict:
    """Retention as if a day lasted `keep_minutes`: every kind is kept one day
    (ENTITYFLOW_RETAIN_*_DAYS=1 in the environment), and the prune is told it is one day
    minus `keep_minutes` later than it is."""
    from django.utils import timezone

    from automation.services.retention import prune

    later = timezone.now() + timedelta(days=1) - timedelta(minutes=keep_minutes)
    return prune(now=later, seconds=50)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench soak",
                                     description="A steady mixed load for N minutes.")
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--keep-minutes", type=float, default=10,
                        help="retention, compressed: rows older than this are pruned")
    parser.add_argument("--window-seconds", type=int, default=WINDOW_S, help=argparse.SUPPRESS)
    # its database and queue name (tests run a short soak beside other sessions)
    parser.add_argument("--database", default=DATABASE, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=1.0,
                        help="scale every client's rate (1.0: ~13 HTTP requests and 2 "
                             "saves a second)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = _parse(argv)
    rates = {"saves": 2.0 * args.rate, "api": 2.0 * args.rate, "webhooks": 2.0 * args.rate,
             "approvals": 1.0 * args.rate}
    workdir = ROOT / "var" / "bench" / ("soak" if args.database == DATABASE else args.database)
    workdir.mkdir(parents=True, exist_ok=True)
    for old in workdir.glob("*.log"):
        old.unlink()
    database_url, redis_url = bench_urls(args.database)
    try:
        bench_database(database_url, create=True)
    except Exception as exc:  # noqa: BLE001
        print(json.dumps({"soak": {"error": f"needs PostgreSQL: {exc}"}}))
        return 2
    env = environment(database_url, redis_url, workdir)
    env.update({"Q_CLUSTER_NAME": f"entityflow-{args.database}", "Q_WORKERS": "2",
                "Q_TIMEOUT": "60", "Q_RETRY": "120", "ENTITYFLOW_STEP_LEASE_SECONDS": "90",
                **{f"ENTITYFLOW_RETAIN_{kind}_DAYS": "1" for kind in (
                    "RUNS", "EVENTS", "WEBHOOK_DELIVERIES", "INBOUND_DELIVERIES",
                    "TASK_RESULTS")}})
    servers: dict[str, Proc] = {}
    load = None
    try:
        client = django_setup(env, "soak-load", fixtures_ensure)
        servers["gunicorn"], base = gunicorn_server(env, workdir, "-c", "config/gunicorn.py")
        for n in (1, 2):
            servers[f"qcluster-{n}"] = Proc([sys.executable, "manage.py", "qcluster"], env,
                                            workdir / f"qcluster-{n}.log")
        time.sleep(10)
        began = time.monotonic()
        latencies = Latencies(began, args.window_seconds)
        load = Load(base, client, latencies, rates)
        load.start()
        figures = _observe(args, servers, began, load, latencies)
    except Exception as exc:  # noqa: BLE001  (the last line is JSON either way)
        import traceback

        traceback.print_exc()
        print(json.dumps({"soak": {"error": f"{type(exc).__name__}: {exc}"}}))
        return 1
    finally:
        if load:
            load.join()
        stop_all(list(servers.values()))
        from django.db import connections

        connections.close_all()
        bench_database(database_url, create=False)
    print(report(figures))
    print(json.dumps({"soak": figures}))
    return 0 if figures["verdict"] == "PASS" else 1


def _observe(args, servers, began, load, latencies) -> dict:
    end = began + args.minutes * 60
    load_avg = [os.getloadavg()[0]]
    rss_start: dict[str, float] = {}
    tables: list[dict] = []
    pruned: dict[str, int] = defaultdict(int)
    window_s = args.window_seconds
    next_prune, next_window = began + 60, began + window_s
    while time.monotonic() < end:
        now = time.monotonic()
        if not rss_start and now - began >= 60:  # one minute in: imports and caches warm
            rss_start = {label: rss_mb(pid) for label, pid in processes(servers).items()}
        if now >= next_prune:
            try:
                for kind, n in prune_compressed(args.keep_minutes).items():
                    pruned[kind] += n
            except Exception:  # noqa: BLE001  (shown in the figures; next minute again)
                pruned["failed"] += 1
            next_prune += 60
        if now >= next_window:
            tables.append(row_counts())
            load_avg.append(os.getloadavg()[0])
            next_window += window_s
        time.sleep(1)
    if len(tables) < round((time.monotonic() - began) / window_s):  # the last boundary
        tables.append(row_counts())
        load_avg.append(os.getloadavg()[0])
    if len(load_avg) < len(tables) + 2:
        load_avg.append(os.getloadavg()[0])
    rss_end = {label: rss_mb(pid) for label, pid in processes(servers).items()}
    windows = []
    for window in sorted(latencies.windows):
        values = latencies.windows[window]
        if len(values) < 20:
            continue  # the last few seconds after the final full window
        windows.append({"window": window + 1, "requests": len(values),
                        "p50_ms": round(p99(values, 0.5), 1), "p99_ms": round(p99(values), 1),
                        "errors_5xx": latencies.errors.get(window, 0)})
    rss = {label: {"start_mb": round(rss_start.get(label) or 0, 1),
                   "end_mb": round(rss_end.get(label) or 0, 1)}
           for label in rss_end if label in rss_start}
    growth = max((v["end_mb"] / v["start_mb"] - 1 for v in rss.values() if v["start_mb"]),
                 default=0.0)
    p99s = [w["p99_ms"] for w in windows]
    p99_spread = (max(p99s) / min(p99s) - 1) if len(p99s) > 1 and min(p99s) else 0.0
    # Entities are the business's own records, which no retention deletes: they grow.
    growing = [table for table in TABLES if table != "entities_entity" and len(tables) >= 3
               and tables[-1][table] > 1.15 * tables[-2][table] + 50]
    verdict = "PASS" if growth <= 0.15 and p99_spread <= 0.15 and not growing else "FAIL"
    return {"minutes": args.minutes, "keep_minutes": args.keep_minutes,
            "done": dict(load.counts), "failures": dict(load.failures),
            "http_statuses": {str(k): v for k, v in sorted(latencies.statuses.items())},
            "rss": rss, "rss_growth_max": round(growth, 3), "windows": windows,
            "p99_spread": round(p99_spread, 3), "tables": tables, "tables_growing": growing,
            "pruned": dict(pruned), "load_average": [round(x, 1) for x in load_avg],
            "cores": os.cpu_count(), "window_s": window_s, "verdict": verdict}


def report(f: dict) -> str:
    lines = [f"entityflow soak — {f['minutes']:g} minutes on PostgreSQL + Redis, gunicorn + "
             f"2 qcluster (2 workers each), retention compressed to {f['keep_minutes']:g} "
             f"minutes, {f['cores']} cores, load average {' → '.join(map(str, f['load_average']))}",
             f"  done: {', '.join(f'{k} {v}' for k, v in sorted(f['done'].items()))}; "
             f"http statuses {f['http_statuses']}"]
    for failure, n in sorted(f["failures"].items()):
        lines.append(f"  failed {n} × {failure}")
    lines.append("")
    lines.append("| process | RSS start (MB) | RSS end (MB) | change |")
    lines.append("|---|---:|---:|---:|")
    for label, v in f["rss"].items():
        change = (v["end_mb"] / v["start_mb"] - 1) * 100 if v["start_mb"] else 0
        lines.append(f"| {label} | {v['start_mb']} | {v['end_mb']} | {change:+.1f} % |")
    lines.append("")
    lines.append(f"| window ({f['window_s'] / 60:g} min) | requests | p50 (ms) | p99 (ms) | 5xx "
                 "| load average at its end |")
    lines.append("|---:|---:|---:|---:|---:|---:|")
    loads = f["load_average"][1:]
    for i, w in enumerate(f["windows"]):
        load = loads[i] if i < len(loads) else ""
        lines.append(f"| {w['window']} | {w['requests']} | {w['p50_ms']} | {w['p99_ms']} | "
                     f"{w['errors_5xx']} | {load} |")
    lines.append("")
    heads = [f"after {f['window_s'] * (i + 1) / 60:g} min" for i in range(len(f["tables"]))]
    lines.append("| table | " + " | ".join(heads) + " |")
    lines.append("|---|" + "---:|" * len(heads))
    for table in TABLES:
        lines.append(f"| {table} | " + " | ".join(str(t[table]) for t in f["tables"]) + " |")
    lines.append("")
    lines.append(f"  RSS growth at most {f['rss_growth_max'] * 100:.1f} %, p99 spread "
                 f"{f['p99_spread'] * 100:.1f} %, tables still growing: "
                 f"{', '.join(f['tables_growing']) or 'none'}; pruned {f['pruned']}")
    lines.append(f"  verdict: {f['verdict']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
