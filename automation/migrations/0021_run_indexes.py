"""Fewer indexes written by every run's and step run's INSERT (docs/performance.md,
"The API trigger: before and after"): the single-column indexes of foreign keys that
another index already leads with (a run's process and entity, a step run's run) and of a
step run's status (the (status, lease_expires_at) index leads with it) are dropped; the
references most runs leave empty (event, batch, rerun_of, parent_run, parent_step_run,
created_by, a step run's parent) are indexed only where they are set.

The fields' `db_index` changes are recorded in the state only: Django would rebuild the
whole table on SQLite (and drop and re-validate each foreign key on PostgreSQL) for what
is only a DROP INDEX of the index it made for the field."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models



# The fields whose own single-column index is dropped, with their columns.
DROPPED = {"run": ("process_id", "entity_id", "event_id", "batch_id", "rerun_of_id",
                   "parent_run_id", "parent_step_run_id", "created_by_id"),
           "steprun": ("run_id", "parent_id", "status")}


def _single_column_indexes(schema_editor, model, column: str) -> list[str]:
    """The plain (not unique, not partial) indexes on exactly `column`: Django's own for
    the field (on PostgreSQL also its `_like` twin for a text column)."""
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, model._meta.db_table)
    return [name for name, about in constraints.items()
            if about["index"] and not about["unique"] and not about["primary_key"]
            and about["columns"] == [column] and not name.endswith("_set")]


def drop_field_indexes(apps, schema_editor):
    for model_name, columns in DROPPED.items():
        model = apps.get_model("automation", model_name)
        for column in columns:
            for name in _single_column_indexes(schema_editor, model, column):
                schema_editor.execute(f"DROP INDEX {schema_editor.quote_name(name)}")


def create_field_indexes(apps, schema_editor):
    for model_name, columns in DROPPED.items():
        model = apps.get_model("automation", model_name)
        for column in columns:
            field = next(f for f in model._meta.concrete_fields if f.column == column)
            schema_editor.execute(schema_editor._create_index_sql(model, fields=[field]))


# PostgreSQL gives an indexed or unique text field a second, LIKE-only index
# (`varchar_pattern_ops`); nothing searches runs by a prefix of their status or key, and
# every run's INSERT and status change writes it. Dropped on the database only: the fields
# keep their index and uniqueness, and Django drops such an index with IF EXISTS should a
# later migration alter the field.
PATTERN_INDEXED = ("status", "idempotency_key")


def drop_pattern_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    run = apps.get_model("automation", "run")
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s "
                       "AND indexdef LIKE %s", [run._meta.db_table, "%pattern_ops%"])
        names = [name for (name,) in cursor.fetchall()]
    for name in names:
        schema_editor.execute(f"DROP INDEX {schema_editor.quote_name(name)}")


def create_pattern_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    run = apps.get_model("automation", "run")
    for name in PATTERN_INDEXED:
        schema_editor.execute(schema_editor._create_like_index_sql(run, run._meta.get_field(name)))


class Migration(migrations.Migration):

    dependencies = [
        ('automation', '0020_apimatch_run_entity_recent'),
        ('entities', '0005_apia_event_skipped_triggers'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='run',
            name='run_entity_recent',
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='run',
                    name='batch',
                    field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='runs', to='automation.batch'),
                ),
                migrations.AlterField(
                    model_name='run',
                    name='created_by',
                    field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
                ),
                migrations.AlterField(
                    model_name='run',
                    name='entity',
                    field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='runs', to='entities.entity'),
                ),
                migrations.AlterField(
                    model_name='run',
                    name='event',
                    field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='runs', to='entities.entityevent'),
                ),
                migrations.AlterField(
                    model_name='run',
                    name='parent_run',
                    field=models.ForeignKey(blank=True, db_index=False, help_text='The run whose `process` step started this one (a sub-process).', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='subruns', to='automation.run'),
                ),
                migrations.AlterField(
                    model_name='run',
                    name='parent_step_run',
                    field=models.ForeignKey(blank=True, db_index=False, help_text="The `process` step run that waits for this run's end.", null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='subruns', to='automation.steprun'),
                ),
                migrations.AlterField(
                    model_name='run',
                    name='process',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='runs', to='automation.apiprocess'),
                ),
                migrations.AlterField(
                    model_name='run',
                    name='rerun_of',
                    field=models.ForeignKey(blank=True, db_index=False, help_text='The run this one re-runs (a retry or a re-run from a chosen step).', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='reruns', to='automation.run'),
                ),
                migrations.AlterField(
                    model_name='steprun',
                    name='parent',
                    field=models.ForeignKey(blank=True, db_index=False, help_text="The step whose execution this is part of (an agent's tool call).", null=True, on_delete=django.db.models.deletion.CASCADE, related_name='children', to='automation.steprun'),
                ),
                migrations.AlterField(
                    model_name='steprun',
                    name='run',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='steps', to='automation.run'),
                ),
                migrations.AlterField(
                    model_name='steprun',
                    name='status',
                    field=models.CharField(choices=[('pending', 'Pending'), ('running', 'Running'), ('waiting', 'Waiting'), ('completed', 'Completed'), ('failed', 'Failed'), ('cancelled', 'Cancelled')], default='pending', max_length=20),
                ),
            ],
            database_operations=[migrations.RunPython(drop_field_indexes,
                                                      create_field_indexes)],
        ),
        migrations.RunPython(drop_pattern_indexes, create_pattern_indexes),
        migrations.AddIndex(
            model_name='run',
            index=models.Index(condition=models.Q(('entity__isnull', False)), fields=['entity', 'created_at'], name='run_entity_recent'),
        ),
        migrations.AddIndex(
            model_name='run',
            index=models.Index(condition=models.Q(('event__isnull', False)), fields=['event'], name='run_event_set'),
        ),
        migrations.AddIndex(
            model_name='run',
            index=models.Index(condition=models.Q(('batch__isnull', False)), fields=['batch'], name='run_batch_set'),
        ),
        migrations.AddIndex(
            model_name='run',
            index=models.Index(condition=models.Q(('rerun_of__isnull', False)), fields=['rerun_of'], name='run_rerun_of_set'),
        ),
        migrations.AddIndex(
            model_name='run',
            index=models.Index(condition=models.Q(('parent_run__isnull', False)), fields=['parent_run'], name='run_parent_run_set'),
        ),
        migrations.AddIndex(
            model_name='run',
            index=models.Index(condition=models.Q(('parent_step_run__isnull', False)), fields=['parent_step_run'], name='run_parent_step_run_set'),
        ),
        migrations.AddIndex(
            model_name='run',
            index=models.Index(condition=models.Q(('created_by__isnull', False)), fields=['created_by'], name='run_created_by_set'),
        ),
        migrations.AddIndex(
            model_name='steprun',
            index=models.Index(condition=models.Q(('parent__isnull', False)), fields=['parent'], name='steprun_parent_set'),
        ),
    ]
