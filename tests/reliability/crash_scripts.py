"""What test_postgres_crash.py runs in subprocesses against a private PostgreSQL cluster
(bench/pgcluster.py): `python -m tests.reliability.crash_scripts <name> [args]`. Each
prints one JSON line. The test process itself stays on the lane's test database."""

import json
import sys

TRANSFORM = {"type": "function", "function": "transform",
             "config": {"params": {"output": {"n": "input.n"}}}}


def _setup() -> None:
    import django

    django.setup()


def _process(slug: str, steps: int = 2):
    from automation.services.processes import process_save

    ids = [f"s{i}" for i in range(steps)]
    return process_save(slug=slug, name=slug, definition={
        "steps": [{**TRANSFORM, "id": step, **({"next": ids[i + 1]} if i + 1 < steps else {})}
                  for i, step in enumerate(ids)],
        "triggers": [{"type": "manual"}]})


def complete_and_read() -> dict:
    """A run triggered through the API, executed inline (synchronous mode, as a worker
    would: the store's one-statement records), then read by the client: what it saw."""
    from rest_framework.test import APIClient

    from automation.services.api_auth import api_client_create, tokens_issue

    _process("durable")
    client, _ = api_client_create(name="crash test", rate_limit_per_minute=0)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens_issue(client=client)['accessToken']}")
    answer = api.post("/api/workflow-definitions/durable/trigger", {"input": {"n": 7}},
                      format="json")
    run_id = answer.json()["executionId"]
    seen = api.get(f"/api/executions/{run_id}?expand=steps").json()
    return {"run": run_id, "seen": seen}


def start_runs(count: str) -> dict:
    """`count` runs of a 2-step process, started with the doorbells sent to the broker."""
    from automation.services.runs import run_start

    process = _process("outage")
    runs = [run_start(process=process, trigger={"type": "manual"}, input={"n": n})[0]
            for n in range(int(count))]
    return {"runs": [str(run.pk) for run in runs]}


HOOK_TOKEN = "outage-webhook-token-0123456789"


def api_client() -> dict:
    """An API client, and a process with a webhook trigger on /outage (?token=HOOK_TOKEN)."""
    from automation.services.api_auth import api_client_create
    from automation.services.processes import process_save

    process_save(slug="hooked", name="hooked", definition={
        "steps": [{**TRANSFORM, "id": "s0"}],
        "triggers": [{"type": "webhook", "config": {"path": "/outage", "token": HOOK_TOKEN}}]})
    client, secret = api_client_create(name="outage test", rate_limit_per_minute=0)
    return {"key": client.key, "secret": secret}


if __name__ == "__main__":
    _setup()
    name, *args = sys.argv[1:]
    print(json.dumps({"complete_and_read": complete_and_read, "start_runs": start_runs,
                      "api_client": api_client}[name](*args)))
