"""The sweeper's and retention's schedules (0002, 0006) written again where django-q2's
tables now live: on SQLite the task queue has a file of its own (config/queue.py), and
an installation migrated before that finds the queue's new file empty. Idempotent."""

from django.db import migrations

SCHEDULES = {
    "entityflow-sweeper": {"func": "automation.tasks.sweep", "schedule_type": "I", "minutes": 1,
                           "repeats": -1},
    "entityflow-prune": {"func": "automation.tasks.prune", "schedule_type": "D", "repeats": -1},
}


def ensure_schedules(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    for name, defaults in SCHEDULES.items():
        if not Schedule.objects.filter(name=name).exists():
            Schedule.objects.create(name=name, **defaults)


class Migration(migrations.Migration):
    dependencies = [("automation", "0011_batchperf_fanned_out_at"),
                    ("automation", "0006_prune_schedule")]
    operations = [migrations.RunPython(ensure_schedules, migrations.RunPython.noop)]
