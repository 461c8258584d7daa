from django.db import migrations, models

# The ORM broker's queue table (django-q2's, which has no index) is read one priority at
# a time (automation.store.queues): an index on (key, lock) makes each read a short range
# scan however many low-priority doorbells wait. IF NOT EXISTS: SQLite and PostgreSQL.
ORMQ_INDEX = ('CREATE INDEX IF NOT EXISTS "entityflow_ormq_key_lock" '
              'ON "django_q_ormq" ("key", "lock")')


class Migration(migrations.Migration):

    dependencies = [
        ('automation', '0014_subprocess_parent_run'),
        ('django_q', '0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more'),
    ]

    operations = [
        migrations.AddField(
            model_name='batch',
            name='priority',
            field=models.CharField(blank=True, choices=[('high', 'High'), ('normal', 'Normal'), ('low', 'Low')], help_text="The priority of the batch's runs; blank: the process's.", max_length=6),
        ),
        migrations.AddField(
            model_name='run',
            name='priority',
            field=models.CharField(choices=[('high', 'High'), ('normal', 'Normal'), ('low', 'Low')], default='normal', max_length=6),
        ),
        migrations.AddField(
            model_name='steprun',
            name='priority',
            field=models.CharField(choices=[('high', 'High'), ('normal', 'Normal'), ('low', 'Low')], default='normal', max_length=6),
        ),
        # in the database that holds django-q2's tables (config/queue.py routes it)
        migrations.RunSQL(ORMQ_INDEX, 'DROP INDEX IF EXISTS "entityflow_ormq_key_lock"',
                          hints={"queue_table": True}),
    ]
