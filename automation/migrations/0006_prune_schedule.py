"""Retention's prune runs once a day in the worker (django-q2 schedule)."""

from django.db import migrations


def add_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name="entityflow-prune",
        defaults={"func": "automation.tasks.prune", "schedule_type": "D", "repeats": -1},
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name="entityflow-prune").delete()


class Migration(migrations.Migration):
    dependencies = [("automation", "0005_steprun_key_attempt")]
    operations = [migrations.RunPython(add_schedule, remove_schedule)]
