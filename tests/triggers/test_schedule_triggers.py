from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django_q.brokers import get_broker
from django_q.models import Schedule
from django_q.scheduler import scheduler

from automation.definitions.schedule_config import next_occurrence, validate_schedule_config
from automation.models import ApiProcess, ProcessTrigger, Run
from automation.services.processes import process_set_enabled
from automation.triggers.schedules import FIRE, fire, next_run_for, sync_schedules

pytestmark = pytest.mark.django_db

NEW_YORK = ZoneInfo("America/New_York")
NINE_NY = {"type": "schedule", "config": {"cron": "0 9 * * *", "timezone": "America/New_York"}}


def utc(*parts) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def rows():
    return Schedule.objects.filter(func=FIRE).order_by("args")


def run_scheduler(committed) -> None:
    """django-q2's own scheduler pass; with the synchronous test queue the task it
    enqueues (our `fire`) runs inline, then the after-commit work runs."""
    with committed():
        scheduler(broker=get_broker())


# --- Firing through the real scheduler ----------------------------------------------

def test_nine_new_york_fires_at_local_nine_on_both_sides_of_dst(save_process, committed):
    with time_machine.travel(utc(2026, 3, 6, 20, 0), tick=False) as clock:
        process = save_process("daily-report", [NINE_NY])
        assert rows().get().next_run == utc(2026, 3, 7, 14, 0)

        fired = []
        for now, next_run in [
            (utc(2026, 3, 7, 14, 0, 5), utc(2026, 3, 8, 13, 0)),   # Saturday, EST
            (utc(2026, 3, 8, 13, 0, 5), utc(2026, 3, 9, 13, 0)),   # Sunday, the change
            (utc(2026, 3, 9, 13, 0, 5), utc(2026, 3, 10, 13, 0)),  # Monday, EDT
        ]:
            clock.move_to(now)
            run_scheduler(committed)
            row = rows().get()
            assert (row.next_run, row.repeats) == (next_run, 1)
            fired.append(Run.objects.filter(process=process).count())

    assert fired == [1, 2, 3]
    runs = Run.objects.filter(process=process).order_by("created_at")
    scheduled = [datetime.fromisoformat(r.trigger["scheduledFor"]) for r in runs]
    assert scheduled == [utc(2026, 3, 7, 14, 0), utc(2026, 3, 8, 13, 0), utc(2026, 3, 9, 13, 0)]
    assert {s.astimezone(NEW_YORK).strftime("%H:%M") for s in scheduled} == {"09:00"}
    assert {r.status for r in runs} == {Run.Status.COMPLETED}
    first = runs[0]
    assert first.trigger["type"] == "schedule"
    assert first.input["localTime"] == "2026-03-07T09:00:00-05:00"


def test_nothing_fires_before_local_nine_after_the_change(save_process, committed):
    with time_machine.travel(utc(2026, 3, 8, 14, 0), tick=False) as clock:
        process = save_process("after-change", [NINE_NY])
        assert rows().get().next_run == utc(2026, 3, 9, 13, 0)
        clock.move_to(utc(2026, 3, 9, 12, 59, 30))
        run_scheduler(committed)
        assert Run.objects.filter(process=process).count() == 0
        clock.move_to(utc(2026, 3, 9, 13, 0, 30))
        run_scheduler(committed)
        run_scheduler(committed)  # a second pass finds the row re-armed, not due
        assert Run.objects.filter(process=process).count() == 1


def test_a_duplicated_fire_starts_one_run(save_process, committed):
    with time_machine.travel(utc(2026, 3, 7, 14, 0, 5), tick=False):
        process = save_process("dup-fire", [NINE_NY])
        with committed():
            first = fire(process.pk, 0, scheduled_for="2026-03-07T14:00:00+00:00")
        with committed():
            again = fire(process.pk, 0, scheduled_for="2026-03-07T14:00:00+00:00")
    assert first == again
    assert Run.objects.filter(process=process).count() == 1


def test_a_false_condition_counts_a_skip_and_still_rearms(save_process, committed):
    trigger = {**NINE_NY, "condition": "event.localTime.startsWith('2026-03-09')"}
    with time_machine.travel(utc(2026, 3, 6, 20, 0), tick=False) as clock:
        process = save_process("weekday-only", [trigger])
        clock.move_to(utc(2026, 3, 7, 14, 0, 5))
        run_scheduler(committed)
        assert Run.objects.filter(process=process).count() == 0
        assert ProcessTrigger.objects.get(process=process).skipped_count == 1
        assert rows().get().next_run == utc(2026, 3, 8, 13, 0)


def test_a_fire_for_a_removed_trigger_starts_nothing_and_drops_its_row(save_process, committed):
    process = save_process("gone", [NINE_NY])
    ProcessTrigger.objects.filter(process=process).delete()
    with committed():
        assert fire(process.pk, 0, scheduled_for="2026-03-07T14:00:00+00:00") is None
    assert not rows().exists()
    assert not Run.objects.filter(process=process).exists()


# --- Keeping the rows in step with the processes -------------------------------------

def test_saves_disable_and_enable_keep_one_row_per_schedule_trigger(save_process, committed):
    triggers = [NINE_NY, {"type": "event", "config": {"eventType": "order.paid"}},
                {"type": "schedule", "config": {"cron": "*/15 * * * *"}}]
    process = save_process("reports", triggers)
    assert [r.args for r in rows()] == [f"({process.pk}, 0)", f"({process.pk}, 2)"]
    assert {r.name for r in rows()} == {"entityflow:reports:0", "entityflow:reports:2"}
    pks = sorted(rows().values_list("pk", flat=True))

    for _ in range(3):
        save_process("reports", triggers)
    assert sorted(rows().values_list("pk", flat=True)) == pks

    with committed():
        process_set_enabled(process=process, enabled=False)
    assert not rows().exists()
    assert next_run_for(ApiProcess.objects.get(pk=process.pk)) is None

    for _ in range(2):
        with committed():
            process_set_enabled(process=process, enabled=True)
    assert rows().count() == 2
    assert next_run_for(ApiProcess.objects.get(pk=process.pk)) == min(r.next_run for r in rows())


def test_changing_the_cron_moves_the_row_and_removing_the_trigger_deletes_it(save_process):
    with time_machine.travel(utc(2026, 6, 1, 12, 0), tick=False):
        save_process("moving", [NINE_NY])
        assert rows().get().next_run == utc(2026, 6, 1, 13, 0)
        save_process("moving", [{"type": "schedule",
                                 "config": {"cron": "30 18 * * *", "timezone": "Europe/Paris"}}])
        assert rows().get().next_run == utc(2026, 6, 1, 16, 30)
        assert rows().get().cron == "30 18 * * *"
        save_process("moving", [])
    assert not rows().exists()


def test_sync_removes_rows_of_deleted_processes_and_duplicates(save_process):
    process = save_process("short-lived", [NINE_NY])
    Schedule.objects.create(func=FIRE, args=f"({process.pk}, 0)", schedule_type=Schedule.ONCE,
                            repeats=1, name="a stray copy")
    assert sync_schedules()["deleted"] == 1
    assert rows().count() == 1
    process.delete()
    assert sync_schedules() == {"created": 0, "updated": 0, "deleted": 1}
    assert not rows().exists()


@pytest.mark.parametrize("config", [
    {"cron": "0 9 * * *", "timezone": "Mars/Olympus_Mons"}, {"cron": 9}, ["0 9 * * *"]])
def test_a_trigger_that_cannot_be_scheduled_never_breaks_the_sync(save_process, config):
    """Definitions saved before validation existed must not break anyone's commit."""
    process = save_process("broken", [NINE_NY])
    ProcessTrigger.objects.filter(process=process).update(config=config)
    assert sync_schedules()["deleted"] == 1
    assert not rows().exists()


def test_a_spent_row_is_rearmed_by_the_next_sync(save_process):
    with time_machine.travel(utc(2026, 3, 7, 15, 0), tick=False):
        save_process("spent", [NINE_NY])
        rows().update(repeats=0, next_run=utc(2026, 3, 7, 14, 0))
        assert sync_schedules()["updated"] == 1
        assert (rows().get().next_run, rows().get().repeats) == (utc(2026, 3, 8, 13, 0), 1)
        assert sync_schedules() == {"created": 0, "updated": 0, "deleted": 0}


# --- Local time arithmetic and validation --------------------------------------------

def test_a_time_skipped_by_spring_forward_runs_an_hour_later():
    after = utc(2026, 3, 8, 5, 0)  # 00:00 EST, the night of the change
    at = next_occurrence("30 2 * * *", "America/New_York", after=after)
    assert at.astimezone(NEW_YORK).isoformat() == "2026-03-08T03:30:00-04:00"
    following = next_occurrence("30 2 * * *", "America/New_York", after=at)
    assert following.astimezone(NEW_YORK).isoformat() == "2026-03-09T02:30:00-04:00"


def test_a_time_repeated_by_fall_back_runs_once():
    first = next_occurrence("30 1 * * *", "America/New_York", after=utc(2026, 11, 1, 4, 0))
    assert first == utc(2026, 11, 1, 5, 30)  # 01:30 EDT
    assert next_occurrence("30 1 * * *", "America/New_York", after=first) == utc(2026, 11, 2, 6, 30)


@pytest.mark.parametrize(("config", "errors"), [
    ({"cron": "0 9 * * *", "timezone": "America/New_York"}, {}),
    ({"cron": "@daily"}, {}),
    ({"cron": "61 9 * * *"}, {"config.cron": ["'61 9 * * *' is not a valid cron expression."]}),
    ({"cron": "0 9 * * * *"},
     {"config.cron": ["Use five cron fields: minute hour day-of-month month day-of-week."]}),
    ({}, {"config.cron": ["A schedule trigger needs config.cron."]}),
    ({"cron": "0 9 * * *", "timezone": "Mars/Olympus_Mons"}, {"config.timezone": [
        "Unknown time zone 'Mars/Olympus_Mons'. Use an IANA name such as America/New_York."]}),
    ({"cron": "0 9 * * *", "timezone": "../../etc/passwd"}, {"config.timezone": [
        "Unknown time zone '../../etc/passwd'. Use an IANA name such as America/New_York."]}),
    ({"cron": "0 9 * * *", "timezone": 5},
     {"config.timezone": ["config.timezone must be an IANA time zone name."]}),
    ("0 9 * * *", {"config": ["config must be an object."]}),
])
def test_validate_schedule_config(config, errors):
    assert validate_schedule_config(config) == errors


def test_validate_schedule_config_refuses_a_date_that_never_occurs_with_its_path():
    errors = validate_schedule_config({"cron": "0 0 30 2 *"}, prefix="triggers[1].config")
    assert list(errors) == ["triggers[1].config.cron"]
    assert "never occurs" in errors["triggers[1].config.cron"][0]
