"""Load and chaos with real processes: four `qcluster` workers (one worker process each),
three saver processes moving entities new -> received -> approved, each status change
starting a four-step process with a fan-out and an AND-join (bench/reliability.py has
the scenario; `python -m bench reliability` runs it at full size).

The harness calls the sweeper (automation.tasks.sweep_all) every few seconds
from this process, as the scheduled sweeper does every minute in production, with an
8-second pending grace instead of 60; workers hold a step for 10 seconds (the lease), so
a step whose worker was killed is taken back within seconds.
"""

import pytest

import bench.reliability as scenario
from tests.reliability import worker_functions
from tests.worker import Worker, wait_for, worker_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

LOAD_ENTITIES, CHAOS_ENTITIES = 300, 200
WORKER_ENV = {"Q_WORKERS": "1", "Q_TIMEOUT": "8", "Q_RETRY": "30", "LOG_LEVEL": "WARNING",
              "ENTITYFLOW_STEP_LEASE_SECONDS": "10",
              "ENTITYFLOW_FUNCTION_MODULES": "bench.reliability,tests.reliability.worker_functions"}


def purge_queue() -> None:
    from automation.store.doorbell import _broker

    broker = _broker()
    broker.connection.delete(broker.list_key)


@pytest.fixture
def load(tmp_path, settings):
    """Runs a Plan against this test's database; returns (figures, details, effects)."""
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    scenario.fixtures_ensure()
    effects = tmp_path / "effects.log"
    env = worker_env(**WORKER_ENV, **{scenario.EFFECTS_ENV: str(effects)})
    purge_queue()

    def run(plan: scenario.Plan):
        outcome = scenario.Scenario(plan, env=env, workdir=tmp_path).run()
        print("reliability figures:", outcome.figures, dict(outcome.details))  # shown with -s
        return outcome.figures, outcome.details, effects

    yield run
    purge_queue()


@pytest.mark.requires_services
def test_load_every_transition_runs_once_to_completion_with_each_effect_once(load):
    figures, details, effects = load(scenario.Plan(entities=LOAD_ENTITIES))

    assert scenario.checks(figures, effects) == [], (figures, details)
    assert figures["runs_expected"] == figures["runs_created"] == 2 * LOAD_ENTITIES
    assert figures["runs_completed"] == 2 * LOAD_ENTITIES
    assert figures["duplicate_effects"] == 0 and figures["lost"] == 0
    assert figures["events"] == 4 * LOAD_ENTITIES  # created, received, updated, approved
    effect_runs = scenario.effect_counts(effects)
    assert len(effect_runs) == 3 * 2 * LOAD_ENTITIES and set(effect_runs.values()) == {1}
    assert scenario.applied_counts(effects) == effect_runs
    assert not details.get("workers_died"), details


@pytest.mark.requires_services
def test_chaos_every_transition_still_runs_once_to_completion(load):
    """Workers SIGKILLed every 3 s and replaced, every other PostgreSQL connection
    terminated once, Redis restarted once (always started again, see Redis.restart)."""
    plan = scenario.Plan(entities=CHAOS_ENTITIES, chaos=True, kill_every=3.0, min_kills=4,
                         drain_timeout=180)
    figures, details, effects = load(plan)

    problems = scenario.checks(figures, effects)
    assert problems == [], (problems, figures, details)
    assert figures["lost"] == 0 and figures["runs_failed"] == 0
    assert figures["runs_completed"] == figures["runs_expected"] == 2 * CHAOS_ENTITIES
    assert figures["workers_killed"] >= 4
    assert details["db_connections_terminated"] >= 1
    assert details.get("redis_restarts", 0) == 1 or details.get("redis_restart_skipped")
    assert not details.get("drain_timed_out"), details
    # A step may run again after its worker died mid-step (at least once), never twice on
    # one claim (repeats_beyond_attempts, inside checks); a repeat sends the key of the
    # execution it repeats, so the outside system (`effect`) applies each effect once.
    assert figures["duplicate_effects"] == 0
    faults = (figures["workers_killed"] + details.get("workers_died", 0)
              + details["db_connections_terminated"])
    assert figures["repeated_executions"] <= faults
    assert details["recovery_s"] < 150, details


def test_a_worker_survives_expressions_too_costly_for_their_data(tmp_path, settings):
    """A transform whose cost depends on the data is refused before it runs; the same
    worker then completes the next run (both lanes: ORM broker on SQLite)."""
    from automation.models import Run
    from automation.services.processes import process_save
    from automation.services.runs import run_start

    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    worker_functions.CALLS.clear()
    costly = process_save(slug="costly", name="Costly", definition={"steps": [
        {"id": "pairs", "type": "function", "function": "transform", "config": {"params": {
            "output": {"n": "input.items.map(x, input.items.map(y, x + y)).size()"}}}}]})
    regex = process_save(slug="regex", name="Regex", definition={"steps": [
        {"id": "match", "type": "condition", "condition": "input.text.matches('^(a+)+$')",
         "next": "after"},
        {"id": "after", "type": "function", "function": "reliability.count"}]})
    worker = Worker(tmp_path / "worker.log", **{**WORKER_ENV, "Q_WORKERS": "1"})
    try:
        first, _ = run_start(process=costly, trigger={"type": "manual"},
                             input={"items": list(range(5000))})
        second, _ = run_start(process=regex, trigger={"type": "manual"},
                              input={"text": "a" * 200_000 + "!"})
        finished = Run.objects.filter(pk__in=[first.pk, second.pk], status__in=Run.FINISHED)
        wait_for(lambda: finished.count() == 2, 60, interval=0.2, message="both runs to finish")
        assert worker.proc.poll() is None, "the worker exited"
    finally:
        worker.stop()
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == Run.Status.FAILED and "too much data" in first.error["message"]
    assert second.status == Run.Status.COMPLETED, second.error  # linear-time regex: no match
    assert worker_functions.CALLS == []  # the count step ran in the worker, not here
    assert "reincarnated" not in (tmp_path / "worker.log").read_text()
