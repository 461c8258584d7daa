"""Traces across processes (docs/operating.md#tracing): the run is started here, its
steps run in a real qcluster that exports over OTLP/HTTP (the optional exporter) to a
fake collector on 127.0.0.1, and the fake HubSpot reads the traceparent it was sent."""

import pytest

from automation.models import Run
from automation.services.runs import run_start
from tests.api.test_api_traces import hubspot_process
from tests.integrations.fakes.otlp import FakeCollector
from tests.worker import Worker, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def collector():
    fake = FakeCollector().start()
    yield fake
    fake.stop()


def worker_tracing(collector, tmp_path, mode: str) -> Worker:
    return Worker(tmp_path / "worker.log", ENTITYFLOW_TRACING=mode,
                  OTEL_EXPORTER_OTLP_ENDPOINT=collector.url, OTEL_SERVICE_NAME="worker-test",
                  OTEL_BSP_SCHEDULE_DELAY="100")


def completed_run(process, worker: Worker) -> Run:
    try:
        run, _ = run_start(process=process, trigger={"type": "manual"}, input={"n": 7})
        return wait_for(lambda: Run.objects.filter(pk=run.pk, status__in=Run.FINISHED).first(),
                        60, message="the run to finish")
    except BaseException:
        worker.stop()
        raise


def test_a_run_executed_by_a_worker_is_one_trace_with_a_span_per_step(
        trace_spans, hubspot_fake, collector, queued_mode, tmp_path):
    process = hubspot_process(hubspot_fake)
    worker = worker_tracing(collector, tmp_path, "otlp")
    run = completed_run(process, worker)
    try:
        spans = wait_for(lambda: (lambda got: got if any(s.name.startswith("run ") for s in got)
                                  else None)(collector.spans()), 30,
                         message="the worker to export the run's span")
    finally:
        worker.stop()
    assert run.status == Run.Status.COMPLETED, run.error
    trace_id, run_span_id = run.traceparent.split("-")[1:3]
    named = {s.name: s for s in spans}
    assert sorted(named) == ["run copy-deal", "step copy", "step done"]
    assert len(spans) == 3
    assert {s.trace_id for s in spans} == {trace_id}
    assert {s.service for s in spans} == {"worker-test"}
    assert named["run copy-deal"].span_id == run_span_id
    assert named["run copy-deal"].parent_span_id == ""  # started with no caller: a root
    assert named["run copy-deal"].attributes["entityflow.outcome"] == "completed"
    for step in ("copy", "done"):
        span = named[f"step {step}"]
        assert span.parent_span_id == run_span_id
        assert span.attributes["entityflow.process"] == "copy-deal"
        assert span.attributes["entityflow.process.version"] == 1
        assert span.attributes["entityflow.attempt"] == 1
        assert span.attributes["entityflow.outcome"] == "completed"
    # the vendor read the trace id, with the span of the step that called it
    sent = {c.headers.get("Traceparent") for c in hubspot_fake.calls}
    assert sent == {f"00-{trace_id}-{named['step copy'].span_id}-01"}
    assert not trace_spans.get_finished_spans()  # this process only started the run


def test_a_worker_with_tracing_off_exports_and_sends_nothing(
        trace_spans, hubspot_fake, collector, queued_mode, tmp_path):
    """Off wins over a configured endpoint, even for a run that has a trace."""
    process = hubspot_process(hubspot_fake)
    worker = worker_tracing(collector, tmp_path, "off")
    try:
        run = completed_run(process, worker)
    finally:
        worker.stop()
    assert run.status == Run.Status.COMPLETED, run.error
    assert run.traceparent  # started here, where tracing is on
    assert hubspot_fake.calls
    assert not any("Traceparent" in c.headers for c in hubspot_fake.calls)
    assert collector.calls == []
