"""api_trigger_per_s and api_trigger_ratio: POST /api/workflow-definitions/{id}/trigger
through gunicorn as docs/operating.md recommends it (config/gunicorn.py: sync workers, one
more than the cores) with a concurrent client on loopback; every answer must be a 202.

The ratio's baseline is a bare Django view (bench/urls.py) that authenticates the same
bearer token and inserts one row, served by the same gunicorn (same settings, workers and
database) in the same run: the two loads alternate, ROUNDS times each, and each rate is
its requests over its own seconds (each clock runs from the first request sent to the
last answer read of its rounds).

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
from bench.procs import free_port, gunicorn, queue_purge
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

    from bench.urls import BARE_PATH, bare_table_create

    seconds = 4.0 if opts.quick else 15.0
    fixtures.process_create("bench-api")
    bare_table_create()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    url = f"{base}/api/workflow-definitions/bench-api/trigger"
    bare_url = f"{base}/{BARE_PATH}"
    server = None
    try:
        client = _api_client(opts)
        server = gunicorn(opts, port, DJANGO_SETTINGS_MODULE="bench.settings")
        with requests.Session() as session:
            token = _token(session, base, client)
            for target in (url, bare_url):
                first = session.post(target, json={"input": {}}, timeout=120,
                                     headers={"Authorization": f"Bearer {token}"})
                if first.status_code != 202:
                    raise Unavailable(f"POST {target.replace(base, '')} answered "
                                      f"{first.status_code}")
        _load(url, token, 1.0)  # warm both workers
        _load(bare_url, token, 0.5)
        sampler = profiling.sampler_start("gunicorn-api", server.pid) if opts.profile else None
        totals = {url: [0, 0.0, {}], bare_url: [0, 0.0, {}]}
        for _ in range(ROUNDS):
            for target in (url, bare_url):
                started = time.monotonic()
                ok, errors = _load(target, token, seconds / ROUNDS)
                total = totals[target]
                total[0] += ok
                total[1] += time.monotonic() - started
                for key, count in errors.items():
                    total[2][key] = total[2].get(key, 0) + count
        profiling.sampler_stop(sampler, "gunicorn-api", focus="handle_request")
    except Unavailable as exc:
        return {"figures": {"api_trigger_per_s": None, "api_trigger_ratio": None},
                "rows": [("API trigger", f"n/a ({exc})")]}
    finally:
        if server:
            server.stop()
        queue_purge()
    (ok, elapsed, errors), (bare_ok, bare_elapsed, bare_errors) = totals[url], totals[bare_url]
    rate, bare_rate = ok / elapsed, bare_ok / bare_elapsed
    rows = [(f"POST …/trigger, gunicorn {served.workers} sync workers, "
             f"{CONNECTIONS} client connections",
             f"{rate:.0f} req/s ({ok} × 202 in {elapsed:.1f} s)"),
            ("bare view: same token check + one row insert, same server",
             f"{bare_rate:.0f} req/s ({bare_ok} × 202 in {bare_elapsed:.1f} s)"),
            ("trigger / bare", f"{rate / bare_rate:.2f}")]
    if errors or bare_errors:
        rows.append(("API errors", ", ".join(f"{k}: {v}" for k, v in
                                             {**bare_errors, **errors}.items())))
    clean = not errors and not bare_errors
    return {"figures": {"api_trigger_per_s": rate if clean else None,
                        "api_trigger_ratio": rate / bare_rate if clean else None},
            "rows": rows}
