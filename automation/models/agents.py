"""Agents: instructions, a model on an OpenAI-compatible connection, the stored functions
it may call as tools, an optional output schema and the limits of its loop
(docs/user-guide/agents.md). Versioned like a process: every save bumps `version`."""

from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models


class Agent(models.Model):
    key = models.SlugField(max_length=100, unique=True,
                           help_text="The name agent steps give as config.agentRole.")
    instructions = models.TextField(help_text="Sent to the model as the system prompt.")
    connection = models.ForeignKey(
        "Connection", null=True, blank=True, on_delete=models.PROTECT, related_name="agents",
        help_text="An OpenAI-compatible connection; empty: the only one there is.")
    model = models.CharField(max_length=100, blank=True,
                             help_text="Empty: the connection's default model.")
    tools = models.JSONField(default=list, blank=True,
                             help_text="Names of stored functions the model may call.")
    output_schema = models.JSONField(null=True, blank=True,
                                     help_text="JSON Schema the final answer must fit.")
    max_iterations = models.PositiveIntegerField(default=10, validators=[MinValueValidator(1)])
    max_tool_calls = models.PositiveIntegerField(default=20)
    max_tokens = models.PositiveIntegerField(null=True, blank=True,
                                             help_text="Token budget of one step (all turns).")
    timeout_seconds = models.PositiveIntegerField(null=True, blank=True)
    input_price = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal(0),
                                      help_text="Cost per million prompt tokens.")
    output_price = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal(0),
                                       help_text="Cost per million completion tokens.")
    description = models.TextField(blank=True)
    version = models.PositiveIntegerField(default=1, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key
