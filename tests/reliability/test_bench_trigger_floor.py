"""The API scenario's floor view (bench/trigger_floor.py) does what it claims: each POST
writes one run, its first step row and the step's doorbell, as the engine's own start
writes them, and the run executes to completion; a wrong token writes nothing. The
bench counts the same after its load (trigger_floor.check), but a floor that wrote less
than the engine would flatter nothing only if this holds on both databases."""

import pytest
from django.test import Client
from django_q.signing import SignedPackage

from automation.models import Run, StepRun
from automation.services.api_auth import api_client_create, tokens_issue
from automation.store.doorbell import queue_broker, steps_rung
from automation.tasks import step_execute
from bench import fixtures, trigger_floor
from bench.trigger_floor import FLOOR_PATH
from tests.factories import migration_rows

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("bench.urls")]

SAME_EXCEPT = {"id", "created_at", "updated_at", "input", "run_id"}  # fresh for each run
URL = f"/{FLOOR_PATH}bench-api"


@pytest.fixture(autouse=True)
def _fresh(queued_mode):
    """Queued as in production (the doorbell goes to the broker); the floor's captured
    start names the process of an earlier test otherwise (its ids are handed out again)."""
    migration_rows()
    trigger_floor._starts.clear()
    queue_broker().purge_queue()
    yield
    trigger_floor._starts.clear()
    queue_broker().purge_queue()


@pytest.fixture
def bearer():
    client, _ = api_client_create(name="bench")
    return f"Bearer {tokens_issue(client=client)['accessToken']}"


def _doorbells() -> list[int]:
    broker = queue_broker()
    return [pk for package in broker.peek(broker.queue_size() or 1)
            for pk in steps_rung(SignedPackage.loads(package))]


def _row(row) -> dict:
    return {f.attname: getattr(row, f.attname) for f in type(row)._meta.concrete_fields
            if f.attname not in SAME_EXCEPT}


def test_each_post_writes_a_run_its_step_and_its_doorbell_and_the_run_completes(bearer):
    fixtures.process_create("bench-api")
    http = Client()
    captured = http.post(URL, {"input": {"n": 0}}, content_type="application/json",
                         HTTP_AUTHORIZATION=bearer)  # the engine's run_start, captured
    assert captured.status_code == 202
    answer = http.post(URL, {"input": {"n": 7}}, content_type="application/json",
                       HTTP_AUTHORIZATION=bearer)  # replayed
    assert answer.status_code == 202
    run = Run.objects.get(pk=answer.json()["executionId"])
    engine = Run.objects.get(pk=captured.json()["executionId"])
    assert run.input == {"n": 7} and run.status == Run.Status.PENDING
    assert _row(run) == _row(engine)  # the same columns and values, so the same indexes
    step = StepRun.objects.get(run=run)
    assert step.input == {"n": 7} and _row(step) == _row(StepRun.objects.get(run=engine))
    assert step.created_at >= engine.created_at
    assert sorted(_doorbells()) == sorted([StepRun.objects.get(run=engine).pk, step.pk])
    assert trigger_floor.written("bench-api") == {"runs": 2, "steps": 2, "doorbells": 2}
    step_execute(step.pk)
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED
    trigger_floor.check("bench-api", 2)  # what the bench asks after its load


def test_a_wrong_token_gets_401_and_writes_nothing(bearer):
    fixtures.process_create("bench-api")
    http = Client()
    for token in (None, "Bearer not-a-token"):
        headers = {"HTTP_AUTHORIZATION": token} if token else {}
        answer = http.post(URL, {"input": {}}, content_type="application/json", **headers)
        assert answer.status_code == 401
    assert Run.objects.count() == 0 and StepRun.objects.count() == 0 and _doorbells() == []
    assert http.post(URL, {}, content_type="application/json",
                     HTTP_AUTHORIZATION=bearer).status_code == 202  # then one that counts
    assert http.post(URL, {}, content_type="application/json",
                     HTTP_AUTHORIZATION=bearer).status_code == 202
    assert http.post(URL, {}, content_type="application/json",
                     HTTP_AUTHORIZATION="Bearer not-a-token").status_code == 401
    assert trigger_floor.written("bench-api") == {"runs": 2, "steps": 2, "doorbells": 2}


def test_the_bench_check_fails_when_a_202_wrote_nothing(bearer):
    fixtures.process_create("bench-api")
    http = Client()
    for _ in range(2):
        assert http.post(URL, {}, content_type="application/json",
                         HTTP_AUTHORIZATION=bearer).status_code == 202
    queue_broker().purge_queue()  # the doorbells lost
    with pytest.raises(RuntimeError, match="wrote"):
        trigger_floor.check("bench-api", 2)

