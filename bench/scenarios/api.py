"""api_trigger_per_s: POST /api/workflow-definitions/{id}/trigger through gunicorn
(2 sync workers) with a concurrent client on loopback; every answer must be a 202.

No qcluster runs meanwhile: the figure is the API's (a run and its first step row
written, the step enqueued), not the workers'. Prints "n/a" when the API, its auth or
`create_api_client` is not there yet."""

import json
import subprocess
import sys
import threading
import time

from bench import fixtures, profiling
from bench.env import ROOT, environment
from bench.procs import free_port, gunicorn, queue_purge

CLIENT_THREADS = 8


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
    import requests

    ok, errors, lock = [0], {}, threading.Lock()
    stop_at = time.monotonic() + seconds

    def client() -> None:
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {token}"
            while time.monotonic() < stop_at:
                try:
                    code = session.post(url, json={"input": {"n": 1}}, timeout=30).status_code
                except requests.RequestException as exc:
                    code = type(exc).__name__
                with lock:
                    if code == 202:
                        ok[0] += 1
                    else:
                        errors[code] = errors.get(code, 0) + 1

    threads = [threading.Thread(target=client) for _ in range(CLIENT_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return ok[0], errors


def run(opts) -> dict:
    import requests

    seconds = 4.0 if opts.quick else 15.0
    fixtures.process_create("bench-api")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    url = f"{base}/api/workflow-definitions/bench-api/trigger"
    server = None
    try:
        client = _api_client(opts)
        server = gunicorn(opts, port)
        with requests.Session() as session:
            token = _token(session, base, client)
            first = session.post(url, json={"input": {}}, timeout=120,
                                 headers={"Authorization": f"Bearer {token}"})
            if first.status_code != 202:
                raise Unavailable(f"POST {url.replace(base, '')} answered {first.status_code}")
        _load(url, token, 1.0)  # warm both workers
        sampler = profiling.sampler_start("gunicorn-api", server.pid) if opts.profile else None
        started = time.monotonic()
        ok, errors = _load(url, token, seconds)
        elapsed = time.monotonic() - started
        profiling.sampler_stop(sampler, "gunicorn-api", focus="handle_request")
    except Unavailable as exc:
        return {"figures": {"api_trigger_per_s": None}, "rows": [("API trigger", f"n/a ({exc})")]}
    finally:
        if server:
            server.stop()
        queue_purge()
    rate = ok / elapsed
    rows = [(f"POST …/trigger, gunicorn 2 workers, {CLIENT_THREADS} client threads",
             f"{rate:.0f} req/s ({ok} × 202 in {elapsed:.1f} s)")]
    if errors:
        rows.append(("API errors", ", ".join(f"{k}: {v}" for k, v in errors.items())))
    return {"figures": {"api_trigger_per_s": None if errors else rate}, "rows": rows}
