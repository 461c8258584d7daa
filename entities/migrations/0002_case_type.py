"""The built-in Case entity type: a person or company going through a workflow."""

from django.db import migrations

CASE_SCHEMA = {
    "type": "object",
    "properties": {
        "firstName": {"type": "string", "maxLength": 100},
        "lastName": {"type": "string", "maxLength": 100},
        "personalNumber": {"type": "string", "maxLength": 50},
        "phone": {"type": "string", "maxLength": 50},
        "companyName": {"type": "string", "maxLength": 200},
        "companyNumber": {"type": "string", "maxLength": 50},
        "companyAddress": {"type": "string", "maxLength": 300},
    },
    "additionalProperties": True,
}


def create_case_type(apps, schema_editor):
    EntityType = apps.get_model("entities", "EntityType")
    Status = apps.get_model("entities", "Status")
    Transition = apps.get_model("entities", "Transition")
    case, _ = EntityType.objects.update_or_create(
        key="case",
        defaults={"name": "Case", "schema": CASE_SCHEMA,
                  "description": "A person or company going through a workflow."},
    )
    statuses = {}
    for position, (key, label, color, initial, final) in enumerate([
        ("open", "Open", "#2563eb", True, False),
        ("in_progress", "In progress", "#d97706", False, False),
        ("closed", "Closed", "#16a34a", False, True),
    ]):
        statuses[key], _ = Status.objects.update_or_create(
            entity_type=case, key=key,
            defaults={"label": label, "color": color, "is_initial": initial,
                      "is_final": final, "position": position},
        )
    for src, dst in [("open", "in_progress"), ("in_progress", "closed"), ("open", "closed")]:
        Transition.objects.get_or_create(
            entity_type=case, source=statuses[src], target=statuses[dst]
        )


def remove_case_type(apps, schema_editor):
    apps.get_model("entities", "EntityType").objects.filter(key="case").delete()


class Migration(migrations.Migration):
    dependencies = [("entities", "0001_initial")]
    operations = [migrations.RunPython(create_case_type, remove_case_type)]
