"""API processes (workflow definitions) and their immutable versions."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models


class ApiProcess(models.Model):
    slug = models.SlugField(
        max_length=100, unique=True, help_text="The process id used by the API."
    )
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    entity_type = models.ForeignKey(
        "entities.EntityType", null=True, blank=True, on_delete=models.SET_NULL,
        related_name="processes",
    )
    enabled = models.BooleanField(default=True)
    metadata = models.JSONField(default=dict, blank=True)
    parameters_schema = models.JSONField(
        null=True, blank=True,
        help_text="Optional JSON Schema that every parameter set of this process must match.")
    current_version = models.ForeignKey(
        "ProcessVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "API process"
        verbose_name_plural = "API processes"

    def __str__(self) -> str:
        return self.name

    @property
    def definition(self) -> dict:
        return (
            self.current_version.definition
            if self.current_version
            else {"steps": [], "triggers": []}
        )

    def clean(self) -> None:
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        if self.parameters_schema is None:
            return
        if not isinstance(self.parameters_schema, dict):
            raise ValidationError({"parameters_schema": "A JSON Schema is a JSON object."})
        try:
            Draft202012Validator.check_schema(self.parameters_schema)
        except SchemaError as exc:
            raise ValidationError(
                {"parameters_schema": f"Not a valid JSON Schema: {exc.message}"}) from exc


class ProcessVersion(models.Model):
    """A definition as it was saved; never changed afterwards (runs pin one)."""

    process = models.ForeignKey(ApiProcess, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    definition = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["process", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["process", "number"], name="process_version_number")
        ]

    def __str__(self) -> str:
        return f"{self.process.slug} v{self.number}"


class ProcessTrigger(models.Model):
    """One trigger of a process's current version, flattened for lookups by key."""

    class Type(models.TextChoices):
        STATUS = "status"
        EVENT = "event"
        SCHEDULE = "schedule"
        WEBHOOK = "webhook"
        MANUAL = "manual"

    process = models.ForeignKey(ApiProcess, on_delete=models.CASCADE, related_name="triggers")
    version = models.ForeignKey(ProcessVersion, on_delete=models.CASCADE, related_name="+")
    position = models.PositiveIntegerField(default=0)
    type = models.CharField(max_length=20, choices=Type.choices)
    entity_type_key = models.CharField(max_length=64, blank=True)
    status_key = models.CharField(max_length=64, blank=True)
    event_type = models.CharField(max_length=100, blank=True, db_index=True)
    path = models.CharField(max_length=300, blank=True, db_index=True)
    condition = models.TextField(blank=True)
    config = models.JSONField(default=dict, blank=True)
    skipped_count = models.PositiveIntegerField(
        default=0, help_text="Events that matched but whose condition was false."
    )

    class Meta:
        ordering = ["process", "position"]

    def __str__(self) -> str:
        return f"{self.process.slug}: {self.type}"


class IndexStamp(models.Model):
    """A generation counter per in-memory cache, bumped when what it holds changes so every
    process knows to read it again: row 1 for the trigger index (processes), row 2 for
    the function rows (functions.catalog)."""

    generation = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"Index stamp {self.pk}: generation {self.generation}"
