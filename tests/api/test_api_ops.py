"""/healthz and /metrics."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from django_q.models import Schedule

from automation.models import Run, StepRun
from automation.services.processes import process_save
from automation.services.runs import run_start
from tests.api.support import API_DB, assert_error

pytestmark = API_DB


@pytest.fixture
def worker_mode(settings):
    """Steps go to a worker through the broker (not run inline)."""
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}


def sweeper_next_run(when) -> None:
    Schedule.objects.update_or_create(name="entityflow-sweeper", defaults={
        "func": "automation.tasks.sweep", "schedule_type": "I", "minutes": 1, "repeats": -1,
        "next_run": when})


def test_healthz_in_synchronous_mode_needs_no_worker():
    response = Client().get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["database"] == "ok" and body["broker"] == "ok"
    assert body["worker"] == {"lastHeartbeat": None, "mode": "sync"}


def test_healthz_reports_a_worker_that_keeps_the_schedule(worker_mode):
    sweeper_next_run(timezone.now() + timedelta(seconds=30))
    response = Client().get("/healthz")
    assert response.status_code == 200, response.content
    assert response.json()["worker"]["lastHeartbeat"]


def test_healthz_is_503_naming_the_worker_when_no_worker_runs(worker_mode):
    sweeper_next_run(timezone.now() - timedelta(minutes=10))
    response = Client().get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["database"] == "ok" and body["broker"] == "ok" and body["worker"] == "down"
    assert "heartbeat" in body["errors"]["worker"]


def test_healthz_is_503_when_there_is_no_sign_of_a_worker_at_all(worker_mode):
    Schedule.objects.filter(name="entityflow-sweeper").delete()
    assert Client().get("/healthz").status_code == 503


def test_metrics_need_staff_or_the_metrics_token(settings, staff_user):
    settings.ENTITYFLOW_METRICS_TOKEN = "metrics-secret"
    response = Client().get("/metrics")
    assert_error(response, 401, "unauthorized")
    assert_error(Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong"), 401)
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer metrics-secret").status_code == 200
    staff = Client()
    staff.force_login(staff_user)
    assert staff.get("/metrics").status_code == 200


def test_metrics_without_a_configured_token_refuse_every_bearer(settings):
    settings.ENTITYFLOW_METRICS_TOKEN = ""
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401


def test_metrics_text(settings):
    settings.ENTITYFLOW_METRICS_TOKEN = "metrics-secret"
    process = process_save(slug="quick", name="Quick", definition={"steps": [
        {"id": "a", "type": "function", "function": "noop"}]})
    run_start(process=process, trigger={"type": "manual"})
    StepRun.objects.update(duration_ms=30)
    response = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer metrics-secret")
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    text = response.content.decode()
    assert f'entityflow_runs{{status="completed"}} {Run.objects.count()}' in text
    assert 'entityflow_runs{status="failed"} 0' in text
    assert 'entityflow_step_duration_seconds_bucket{le="0.025"} 0' in text
    assert 'entityflow_step_duration_seconds_bucket{le="0.05"} 1' in text
    assert 'entityflow_step_duration_seconds_bucket{le="+Inf"} 1' in text
    assert "entityflow_step_duration_seconds_count 1" in text
    assert "entityflow_queue_depth 0" in text
    assert "# TYPE entityflow_step_duration_seconds histogram" in text


def test_metrics_count_requests_by_view_method_and_status_class(settings):
    settings.ENTITYFLOW_METRICS_TOKEN = "metrics-secret"
    Client().get("/healthz")
    Client().get("/no-such-page")
    text = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer metrics-secret").content.decode()
    assert 'entityflow_http_requests_total{method="GET",status="2xx",view="healthz"}' in text
    assert 'entityflow_http_requests_total{method="GET",status="4xx",view="unmatched"}' in text
    assert "# TYPE entityflow_http_request_duration_seconds histogram" in text
    assert 'entityflow_http_request_duration_seconds_bucket{le="+Inf",method="GET",view="healthz"}' \
        in text


def test_metrics_read_only_the_most_recent_rows(settings):
    """The histogram covers the newest ENTITYFLOW_METRICS_WINDOW step runs and the
    finished runs the newest as many runs: a scrape's cost does not grow with the tables."""
    settings.ENTITYFLOW_METRICS_TOKEN = "metrics-secret"
    settings.ENTITYFLOW_METRICS_WINDOW = 1
    process = process_save(slug="quick", name="Quick", definition={"steps": [
        {"id": "a", "type": "function", "function": "noop"}]})
    for _ in range(3):
        run_start(process=process, trigger={"type": "manual"})
    StepRun.objects.update(duration_ms=30)
    text = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer metrics-secret").content.decode()
    assert "entityflow_step_duration_seconds_count 1.0" in text
    assert 'entityflow_runs{status="completed"} 1.0' in text
