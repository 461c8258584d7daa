"""What an entity IS: its type, statuses, transitions, requirements, events and links."""

import copy
import uuid

from django.core.exceptions import ValidationError
from django.db import models
from django_fsm import RETURN_VALUE, FSMField, FSMModelMixin, transition

from entities.exceptions import TransitionNotAllowedError


class EntityType(models.Model):
    key = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    schema = models.JSONField(
        default=dict, blank=True, help_text="JSON Schema that every entity's data must match."
    )
    rules_version = models.PositiveIntegerField(
        default=0, editable=False,
        help_text="Bumped whenever a status, transition or requirement of the type changes.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        try:
            Draft202012Validator.check_schema(self.schema or {})
        except SchemaError as exc:
            raise ValidationError({"schema": f"Not a valid JSON Schema: {exc.message}"}) from exc


class Status(models.Model):
    entity_type = models.ForeignKey(EntityType, on_delete=models.CASCADE, related_name="statuses")
    key = models.SlugField(max_length=64)
    label = models.CharField(max_length=100)
    color = models.CharField(max_length=7, default="#6b7280", help_text="Badge colour, #rrggbb.")
    is_initial = models.BooleanField(default=False)
    is_final = models.BooleanField(default=False)
    fallback = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Where an entity goes when a requirement of this status stops holding.",
    )
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["entity_type", "position", "id"]
        verbose_name_plural = "statuses"
        constraints = [
            models.UniqueConstraint(fields=["entity_type", "key"], name="status_key_per_type"),
        ]

    def __str__(self) -> str:
        return self.label


class Transition(models.Model):
    entity_type = models.ForeignKey(
        EntityType, on_delete=models.CASCADE, related_name="transitions"
    )
    source = models.ForeignKey(Status, on_delete=models.CASCADE, related_name="outgoing")
    target = models.ForeignKey(Status, on_delete=models.CASCADE, related_name="incoming")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["entity_type", "source", "target"], name="transition_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source.key} → {self.target.key}"


class Requirement(models.Model):
    entity_type = models.ForeignKey(
        EntityType, on_delete=models.CASCADE, related_name="requirements"
    )
    status = models.ForeignKey(
        Status,
        on_delete=models.CASCADE,
        related_name="requirements",
        help_text="The status this requirement must hold for.",
    )
    name = models.CharField(max_length=100)
    expression = models.TextField(
        help_text="CEL, e.g. entity.data.total > 0 or has(entity.data.email)"
    )
    message = models.CharField(max_length=300, help_text="Shown to staff while it does not hold.")
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from entities.exceptions import ExpressionError
        from entities.expressions import validate_expression

        try:
            validate_expression(self.expression)
        except ExpressionError as exc:
            raise ValidationError({"expression": exc.message}) from exc
        if (
            self.status_id
            and self.entity_type_id
            and self.status.entity_type_id != self.entity_type_id
        ):
            raise ValidationError({"status": "The status belongs to another entity type."})


class Entity(FSMModelMixin, models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    entity_type = models.ForeignKey(EntityType, on_delete=models.PROTECT, related_name="entities")
    reference = models.CharField(max_length=200)
    status = FSMField(max_length=64, protected=True, db_index=True)
    data = models.JSONField(default=dict, blank=True)
    unmet_requirements = models.JSONField(default=list, blank=True, editable=False)
    version = models.PositiveIntegerField(default=1, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "entities"
        constraints = [
            models.UniqueConstraint(
                fields=["entity_type", "reference"], name="entity_reference_per_type"
            ),
        ]
        indexes = [models.Index(fields=["entity_type", "status"])]

    def __str__(self) -> str:
        return self.reference

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance.remember_saved_state()
        return instance

    def refresh_from_db(self, using=None, fields=None, from_queryset=None) -> None:
        super().refresh_from_db(using=using, fields=fields, from_queryset=from_queryset)
        self.remember_saved_state(fields)

    def remember_saved_state(self, fields=None) -> None:
        """Keep what the row held so the outbox can tell what a save changed.

        A deep copy, so editing `entity.data` in place still shows up as a change; read
        from `__dict__` so a deferred `data` is not loaded once per row.
        """
        state = dict(getattr(self, "_saved_state", None) or {})
        for name in ("status", "data"):
            if fields is None or name in fields:
                state[name] = copy.deepcopy(self.__dict__.get(name))
        self._saved_state = state

    @property
    def saved_state(self) -> dict | None:
        return getattr(self, "_saved_state", None)

    @transition(field=status, source="*", target=RETURN_VALUE())
    def move_to(self, target: str, *, allowed: set[str]) -> str:
        """The one way a status changes: `allowed` are the targets the type permits."""
        if target not in allowed:
            raise TransitionNotAllowedError(
                f"{self.entity_type.name} {self.reference} cannot move from "
                f"'{self.status}' to '{target}'."
            )
        return target

    def set_initial_status(self, key: str) -> None:
        if self.__dict__.get("status"):
            raise TransitionNotAllowedError("The entity already has a status.")
        type(self)._meta.get_field("status").set_state(self, key)


class ExternalLink(models.Model):
    entity = models.ForeignKey(Entity, on_delete=models.CASCADE, related_name="external_links")
    provider = models.CharField(max_length=50)
    object_type = models.CharField(max_length=50)
    external_id = models.CharField(max_length=200)
    url = models.URLField(max_length=500, blank=True)
    actor = models.CharField(max_length=200, blank=True,
                             help_text="Who wrote the link last: user:, client: or process:.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["provider", "object_type"]
        constraints = [
            models.UniqueConstraint(
                fields=["entity", "provider", "object_type"], name="one_link_per_object_type"
            ),
        ]
        indexes = [models.Index(fields=["provider", "object_type", "external_id"])]

    def __str__(self) -> str:
        return f"{self.provider} {self.object_type} {self.external_id}"


class EntityEvent(models.Model):
    """Outbox row: written in the same transaction as the save that caused it."""

    class Type(models.TextChoices):
        CREATED = "entity.created"
        UPDATED = "entity.updated"
        STATUS_CHANGED = "entity.status_changed"

    type = models.CharField(max_length=100, db_index=True)
    entity = models.ForeignKey(
        Entity, null=True, blank=True, on_delete=models.CASCADE, related_name="events"
    )
    entity_type_key = models.CharField(max_length=64, blank=True)
    from_status = models.CharField(max_length=64, blank=True)
    to_status = models.CharField(max_length=64, blank=True)
    entered_statuses = models.JSONField(default=list, blank=True)
    changed_fields = models.JSONField(default=list, blank=True)
    snapshot = models.JSONField(default=dict, blank=True)
    data = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=200, blank=True)
    actor = models.CharField(
        max_length=200, blank=True,
        help_text="Who caused it: user:, client: or process: (entities.actors).")
    occurred_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    skipped = models.JSONField(
        default=list, blank=True, verbose_name="skipped triggers",
        help_text="Triggers that matched but skipped: [{process, trigger, reason}] (a condition "
                  "that was false or could not be evaluated).",
    )

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(
                fields=["created_at"],
                condition=models.Q(dispatched_at__isnull=True),
                name="event_undispatched",
            )
        ]

    def __str__(self) -> str:
        return f"{self.type} #{self.pk}"
