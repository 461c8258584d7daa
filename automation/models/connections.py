"""Connections to outside systems and the named functions configured on them."""

from django.db import models


class Connection(models.Model):
    provider = models.CharField(max_length=50)
    name = models.SlugField(max_length=100, unique=True)
    credentials_encrypted = models.TextField(blank=True, editable=False)
    base_url = models.URLField(max_length=300, blank=True, help_text="Override the vendor's URL.")
    options = models.JSONField(default=dict, blank=True)
    last_tested_at = models.DateTimeField(null=True, blank=True)
    last_test_ok = models.BooleanField(null=True, blank=True)
    last_test_message = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.provider})"


class Function(models.Model):
    """A named action plus its config (and connection), configured without code."""

    name = models.CharField(max_length=100, unique=True)
    action = models.CharField(max_length=100)
    config = models.JSONField(default=dict, blank=True)
    connection = models.ForeignKey(
        Connection, null=True, blank=True, on_delete=models.PROTECT, related_name="functions"
    )
    params_schema = models.JSONField(
        null=True, blank=True,
        help_text="JSON Schema of the arguments a caller passes (an agent's tool schema); "
                  "they reach the function as its input.")
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
