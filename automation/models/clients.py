"""API clients (key + hashed secret) and the bearer tokens issued to them."""

from django.core.exceptions import ValidationError
from django.db import models

# What an API client may do (docs/rest-api.md#scopes): `read` every GET, `run` writes that
# start or steer work (runs, events, entities, batches, approvals), `define` writes of
# workflow definitions, functions, agents and webhooks, `admin` everything.
SCOPES = ("read", "run", "define", "admin")


def all_scopes() -> list[str]:
    """The default: a client made before scopes existed, or without --scopes, may do all."""
    return list(SCOPES)


def validate_scopes(value) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError("Scopes are a list of names.")
    unknown = sorted(set(value) - set(SCOPES))
    if unknown:
        raise ValidationError(f"Unknown scope(s): {', '.join(unknown)}; "
                              f"known: {', '.join(SCOPES)}.")


class ApiClient(models.Model):
    name = models.CharField(max_length=200)
    key = models.CharField(max_length=64, unique=True)
    secret_hash = models.CharField(max_length=200, editable=False)
    active = models.BooleanField(
        default=True, help_text="Untick to revoke the client and its tokens."
    )
    rate_limit_per_minute = models.PositiveIntegerField(default=600)
    scopes = models.JSONField(default=all_scopes, blank=True,
                              validators=[validate_scopes],
                              help_text="read, run, define, admin (admin allows everything).")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "API client"

    def __str__(self) -> str:
        return f"{self.name} ({self.key})"

    def allows(self, scope: str) -> bool:
        granted = set(self.scopes or ())
        return "admin" in granted or scope in granted


class ApiToken(models.Model):
    class Kind(models.TextChoices):
        ACCESS = "access"
        REFRESH = "refresh"

    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="tokens")
    token_hash = models.CharField(max_length=64, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    expires_at = models.DateTimeField(db_index=True)
    revoked = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} token of {self.client.name}"
