"""api_trigger_per_s and api_trigger_ratio: POST /api/workflow-definitions/{id}/trigger
through gunicorn as docs/operating.md recommends it (config/gunicorn.py: sync workers, one
more than the cores) with a concurrent client on loopback; every answer must be a 202.

The ratio's baseline is a bare Django view (bench/urls.py) that authenticates the same
bearer token and inserts one row, served by the same gunicorn (same settings, workers and
database) in the same run. A third view, the floor (bench/trigger_floor.py), does the
least any trigger must do: the same token check, the trigger's process look-up, the
engine's own statements for the run and its first step in one transaction, the step's
doorbell, a 202; `api_trigger_floor_per_s` and `api_trigger_floor_ratio` (floor / bare)
say how close to the bare view a trigger could come at all on this database and broker
(a context figure, no goal). The three loads alternate (trigger, bare, floor, trigger,
…), ROUNDS times each, and each rate is its requests over its own seconds (each clock
runs from the first request sent to the last answer read of its rounds). After the
load, every 202 of the floor must be a run with its step row and its doorbell, and one
of those runs must execute to completion, or the scenario fails.

No qcluster runs meanwhile: the figure is the API's (a run and its first step row
written, the step enqueued), not the workers'. Prints "n/a" when the API, its auth or
`create_api_client` is not there yet."""

import asyncio
import json
import subprocess
import sys
import time
from urllib.parse import urlsplit

from bench import fixtures, profiling
from bench.env import ROOT, environment
from bench.procs import cpu_seconds, descendants, free_port, gunicorn, queue_purge
from config import gunicorn as served  # the settings the bench's gunicorn reads

CONNECTIONS = 8
ROUNDS = 2


class Unavailable(Exception):
    pass


def _api_client(opts) -> dict:
    base = [sys.executable, "manage.py", "create_api_client", "bench-api", "--json"]
    for argv in (base + ["--rate-limit", "0"], base):
        done = subprocess.run(argv, cwd=ROOT, env=environment(opts), capture_output=True,
                              text=True, timeout=60)
        if done.returncode == 0:
            return json.loads(done.stdout.strip().splitlines()[-1])
    raise Unavailable(f"create_api_client failed: {done.stderr.strip().splitlines()[-1:]}")


def _token(session, base: str, client: dict) -> str:
    answer = session.post(f"{base}/api/auth/authorize",
                          json={"key": client["key"], "secret": client["secret"]}, timeout=120)
    if answer.status_code != 200 or "accessToken" not in answer.json():
        raise Unavailable(f"POST /api/auth/authorize answered {answer.status_code}")
    return answer.json()["accessToken"]


def _load(url: str, token: str, seconds: float) -> tuple[int, dict]:
    """CONNECTIONS concurrent keep-alive connections (reconnecting when the server closes
    one), each sending the trigger request and reading its answer in turn, for `seconds`.
    A plain asyncio HTTP/1.1 client: the load generator shares the machine's two cores
    with the server, so the lighter it is the more of them the server has (with
    `requests` the client took ~1.6 ms of CPU per request, a fifth of the total)."""
    return asyncio.run(_load_async(url, token, seconds))


async def _load_async(url: str, token: str, seconds: float) -> tuple[int, dict]:
    address = urlsplit(url)
    body = json.dumps({"input": {"n": 1}}).encode()
    request = (f"POST {address.path} HTTP/1.1\r\nHost: {address.netloc}\r\n"
               f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    outcomes: dict = {}
    stop_at = time.monotonic() + seconds

    async def connection() -> None:
        writer = None
        while time.monotonic() < stop_at:
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(address.hostname,
                                                                   address.port)
                writer.write(request)
                code, headers, answer = await _answer(reader)
                if code == 202 and b'"executionId"' not in answer:
                    code = "202 without executionId"
                if headers.get(b"connection", b"").lower() == b"close":
                    writer.close()
                    writer = None
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                code = type(exc).__name__
                if writer is not None:
                    writer.close()
                writer = None
            outcomes[code] = outcomes.get(code, 0) + 1
        if writer is not None:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(CONNECTIONS)))
    ok = outcomes.pop(202, 0)
    return ok, outcomes


async def _answer(reader: asyncio.StreamReader) -> tuple[int, dict, bytes]:
    """One HTTP/1.1 answer with a Content-Length (what Django sends here)."""
    status_line = await reader.readuntil(b"\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    headers = {}
    for line in head.split(b"\r\n"):
        name, found, value = line.partition(b":")
        if found:
            headers[name.strip().lower()] = value.strip()
    if b"content-length" not in headers:
        raise ValueError("an answer without Content-Length")
    answer = await reader.readexactly(int(headers[b"content-length"]))
    return int(status_line.split()[1]), headers, answer


def run(opts) -> dict:
    import requests

    from bench import trigger_floor
    from bench.urls import BARE_PATH, bare_table_create

    seconds = 4.0 if opts.quick else 15.0
    fixtures.process_create("bench-api")
    fixtures.process_create(FLOOR_PROCESS)  # the same process; its runs are the floor's
    bare_table_create()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    url = f"{base}/api/workflow-definitions/bench-api/trigger"
    bare_url = f"{base}/{BARE_PATH}"
    floor_url = f"{base}/{trigger_floor.FLOOR_PATH}{FLOOR_PROCESS}"
    targets = (url, bare_url, floor_url)
    server = None
    try:
        client = _api_client(opts)
        server = gunicorn(opts, port, DJANGO_SETTINGS_MODULE="bench.settings")
        with requests.Session() as session:
            token = _token(session, base, client)
            for target in targets:
                first = session.post(target, json={"input": {}}, timeout=120,
                                     headers={"Authorization": f"Bearer {token}"})
                if first.status_code != 202:
                    raise Unavailable(f"POST {target.replace(base, '')} answered "
                                      f"{first.status_code}")
        _load(url, token, 1.0)  # warm the workers
        _load(bare_url, token, 0.5)
        # every 202 of the floor counts for its check, these too (a worker's first
        # floor request is the engine's own start, captured: bench/trigger_floor.py)
        floor_answered = 1 + _load(floor_url, token, 0.5)[0]
        sampler = profiling.sampler_start("gunicorn-api", server.pid) if opts.profile else None
        totals = {target: [0, 0.0, {}, 0.0] for target in targets}
        for _ in range(ROUNDS):
            for target in targets:
                cpu, started = _server_cpu(server.pid), time.monotonic()
                ok, errors = _load(target, token, seconds / ROUNDS)
                total = totals[target]
                total[0] += ok
                total[1] += time.monotonic() - started
                total[3] += _cpu_spent(cpu, _server_cpu(server.pid))
                for key, count in errors.items():
                    total[2][key] = total[2].get(key, 0) + count
        profiling.sampler_stop(sampler, "gunicorn-api", focus="handle_request")
        floor_ok, _, floor_errors, _ = totals[floor_url]
        trigger_floor.check(FLOOR_PROCESS, floor_answered + floor_ok,
                            unanswered=sum(floor_errors.values()))
    except Unavailable as exc:
        return {"figures": dict.fromkeys(FIGURES),
                "rows": [("API trigger", f"n/a ({exc})")]}
    finally:
        if server:
            server.stop()
        queue_purge()
    return _figures(*(totals[target] for target in targets))


def _server_cpu(pid: int) -> dict[int, float]:
    """CPU seconds so far of each process serving the load: gunicorn's, and on
    PostgreSQL the bench database's backends (the bench's own excepted)."""
    from django.db import connection

    pids = [pid, *descendants(pid)]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = "
                           "current_database() AND pid <> pg_backend_pid()")
            pids += [row[0] for row in cursor.fetchall()]
    spent = {}
    for each in pids:
        try:
            spent[each] = cpu_seconds(each)
        except OSError:  # ended meanwhile
            pass
    return spent


def _cpu_spent(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


FLOOR_PROCESS = "bench-api-floor"
FIGURES = ("api_trigger_per_s", "api_trigger_ratio", "api_trigger_floor_per_s",
           "api_trigger_floor_ratio")


def _figures(trigger: list, bare: list, floor: list) -> dict:
    """Each load's [202s, seconds, errors, server CPU seconds] into the figures and the
    table's rows. The
    trigger's figures are null when any of its or the bare view's answers was not a
    202, the floor's when any of its or the bare view's was not."""
    (ok, elapsed, errors, cpu), (bare_ok, bare_elapsed, bare_errors, bare_cpu), \
        (floor_ok, floor_elapsed, floor_errors, floor_cpu) = trigger, bare, floor
    rate, bare_rate, floor_rate = ok / elapsed, bare_ok / bare_elapsed, floor_ok / floor_elapsed
    # gunicorn's and the database backends' CPU: unlike a rate, hardly moved by what
    # else the machine runs (docs/performance.md, "The least a trigger can cost")
    per_request = [c / n if n else 0.0 for c, n in ((cpu, ok), (bare_cpu, bare_ok),
                                                     (floor_cpu, floor_ok))]
    rows = [(f"POST …/trigger, gunicorn {served.workers} sync workers, "
             f"{CONNECTIONS} client connections",
             f"{rate:.0f} req/s ({ok} × 202 in {elapsed:.1f} s)"),
            ("bare view: same token check + one row insert, same server",
             f"{bare_rate:.0f} req/s ({bare_ok} × 202 in {bare_elapsed:.1f} s)"),
            ("floor: token, process look-up, the engine's run + step + doorbell",
             f"{floor_rate:.0f} req/s ({floor_ok} × 202 in {floor_elapsed:.1f} s)"),
            ("trigger / bare", f"{rate / bare_rate:.2f}"),
            ("floor / bare (the most a trigger could reach here)",
             f"{floor_rate / bare_rate:.2f}"),
            ("server CPU per request, ms: trigger / bare / floor",
             " / ".join(f"{each * 1000:.3f}" for each in per_request)),
            ("server CPU per request, bare / it: trigger, floor",
             f"{per_request[1] / per_request[0]:.2f}, {per_request[1] / per_request[2]:.2f}"
             if all(per_request) else "n/a")]
    for name, failed in (("API errors", {**bare_errors, **errors}),
                         ("floor errors", floor_errors)):
        if failed:
            rows.append((name, ", ".join(f"{k}: {v}" for k, v in failed.items())))
    clean, floor_clean = not errors and not bare_errors, not floor_errors and not bare_errors
    values = (rate if clean else None, rate / bare_rate if clean else None,
              floor_rate if floor_clean else None,
              floor_rate / bare_rate if floor_clean else None)
    return {"figures": dict(zip(FIGURES, values, strict=True)), "rows": rows}
