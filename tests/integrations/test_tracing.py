"""integrations.tracing without a database: the modes, the console exporter's lines, and
the traceparent the shared outbound session adds (docs/operating.md#tracing)."""

import json

import pytest

from integrations import tracing
from integrations.net import guarded_session

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
RUN = f"00-{TRACE}-00f067aa0ba902b7-01"


@pytest.fixture
def console(override, tmp_path):
    path = tmp_path / "spans.jsonl"
    override(ENTITYFLOW_TRACING="console", ENTITYFLOW_TRACING_FILE=str(path))
    assert tracing.configure() is not None
    yield path
    tracing.shutdown()


def test_off_configures_nothing_and_adds_no_header(override, echo_server):
    override(ENTITYFLOW_TRACING="off")
    assert tracing.configure() is None and not tracing.enabled()
    with tracing.current(RUN), guarded_session() as session:
        sent = session.request("GET", f"{echo_server.url}/x").json()["headers"]
    assert "Traceparent" not in sent
    assert tracing.run_context() is None


def test_an_unknown_mode_is_off(override):
    override(ENTITYFLOW_TRACING="jaeger")
    assert tracing.mode() == "off" and tracing.configure() is None


def test_console_writes_one_json_span_per_line(console, echo_server):
    with tracing.span_in(RUN, "step a", {"entityflow.step": "a"}) as span:
        with guarded_session() as session:
            sent = session.request("GET", f"{echo_server.url}/x").json()["headers"]
    assert sent["Traceparent"] == f"00-{TRACE}-{span.get_span_context().span_id:016x}-01"
    tracing.shutdown()
    lines = console.read_text().splitlines()
    assert len(lines) == 1
    written = json.loads(lines[0])
    assert written["name"] == "step a"
    assert written["context"]["trace_id"] == f"0x{TRACE}"
    assert written["parent_id"] == "0x00f067aa0ba902b7"
    assert written["attributes"] == {"entityflow.step": "a"}
    assert written["resource"]["attributes"]["service.name"] == "entityflow"


def test_a_run_span_is_written_with_the_ids_chosen_at_its_start(console):
    from datetime import UTC, datetime, timedelta

    start = datetime(2026, 1, 1, tzinfo=UTC)
    with tracing.span_in(RUN, "inside", {}):
        context = tracing.run_context()  # a run started by a step: in the step's trace
    assert context.traceparent.startswith(f"00-{TRACE}-")
    tracing.write_span(context.traceparent, context.parent_span_id, "run child", {},
                       start=start, end=start + timedelta(seconds=2), error=True)
    tracing.shutdown()
    spans = {s["name"]: s for s in map(json.loads, console.read_text().splitlines())}
    assert spans["run child"]["context"]["span_id"] == "0x" + context.traceparent.split("-")[2]
    assert spans["run child"]["parent_id"] == "0x" + spans["inside"]["context"]["span_id"][2:]
    assert spans["run child"]["status"]["status_code"] == "ERROR"
    assert spans["run child"]["start_time"].startswith("2026-01-01T00:00:00")


@pytest.mark.parametrize("bad", ["", "garbage", f"00-{'0' * 32}-00f067aa0ba902b7-01",
                                 f"01-{TRACE}-00f067aa0ba902b7-01"])
def test_a_malformed_stored_context_makes_no_span(console, bad):
    with tracing.span_in(bad, "step a", {}) as span:
        assert span is None
