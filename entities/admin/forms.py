"""The entity form: data as pretty JSON, a "Move to" choice and the version it was read at."""

import json

from django import forms
from django.forms.fields import InvalidJSONInput

from entities.exceptions import EntitiesError
from entities.models import Entity, Status
from entities.requirements import load_rules


class PrettyJSONField(forms.JSONField):
    def prepare_value(self, value):
        if isinstance(value, InvalidJSONInput):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False, cls=self.encoder)


class EntityForm(forms.ModelForm):
    data = PrettyJSONField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 14, "cols": 90, "class": "ef-json"}),
        help_text="JSON object; checked against the entity type's schema when saved.",
    )
    move_to = forms.ChoiceField(
        required=False,
        help_text="Only the moves this entity type allows from the current status.",
    )
    expected_version = forms.IntegerField(required=False, widget=forms.HiddenInput)

    # Set on a per-request subclass when the service refused the first attempt.
    service_error: EntitiesError | None = None

    class Meta:
        model = Entity
        fields = ["entity_type", "reference", "data"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        entity = self.instance
        if entity._state.adding:  # a new entity starts in its type's initial status
            self.fields.pop("move_to", None)
            self.fields.pop("expected_version", None)
            return
        if "move_to" in self.fields:
            self.fields["move_to"].choices = move_choices(entity)
        if "expected_version" in self.fields:
            self.fields["expected_version"].initial = entity.version

    def clean_data(self):
        return self.cleaned_data.get("data") or {}

    def clean(self):
        cleaned = super().clean()
        if self.service_error is not None:
            for field, message in service_error_messages(self.service_error):
                self.add_error(field if field in self.fields else None, message)
        return cleaned


def move_choices(entity: Entity) -> list[tuple[str, str]]:
    rules = load_rules(entity.entity_type)
    labels = dict(
        Status.objects.filter(entity_type_id=entity.entity_type_id).values_list("key", "label")
    )
    allowed = rules.allowed_targets(entity.status)
    ordered = [key for key in labels if key in allowed]
    current = labels.get(entity.status, entity.status)
    return [("", f"— stay in {current} —")] + [(key, labels[key]) for key in ordered]


def service_error_messages(error: EntitiesError) -> list[tuple[str | None, str]]:
    """Where each part of a service error belongs on the form."""
    out: list[tuple[str | None, str]] = []
    for key, messages in (error.fields or {}).items():
        if key == "status":
            out.append(("move_to", error.message))
            continue
        for message in messages:
            if key == "data" or key.startswith("data."):
                out.append(("data", message if key == "data" else f"{key}: {message}"))
            else:
                out.append((key if key != "__all__" else None, message))
    return out or [(None, error.message)]
