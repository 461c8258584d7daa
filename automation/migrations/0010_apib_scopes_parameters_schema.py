"""API client scopes (existing clients keep every scope: the default is all of them) and an
optional parameters JSON Schema per workflow definition."""

from django.db import migrations, models

import automation.models.clients


class Migration(migrations.Migration):

    dependencies = [
        ('automation', '0009_human_task_forms_links'),
    ]

    operations = [
        migrations.AddField(
            model_name='apiclient',
            name='scopes',
            field=models.JSONField(blank=True, default=automation.models.clients.all_scopes, help_text='read, run, define, admin (admin allows everything).', validators=[automation.models.clients.validate_scopes]),
        ),
        migrations.AddField(
            model_name='apiprocess',
            name='parameters_schema',
            field=models.JSONField(blank=True, help_text='Optional JSON Schema that every parameter set of this process must match.', null=True),
        ),
    ]
