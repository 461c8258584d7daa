"""Inbound webhook deliveries seen, so a retried delivery starts nothing new."""

from django.db import models


class InboundDelivery(models.Model):
    process = models.ForeignKey("ApiProcess", on_delete=models.CASCADE, related_name="+")
    delivery_id = models.CharField(max_length=200, help_text="Delivery id header, or a body hash.")
    run = models.ForeignKey(
        "Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at"]
        verbose_name_plural = "inbound deliveries"
        constraints = [
            models.UniqueConstraint(fields=["process", "delivery_id"], name="inbound_delivery_once")
        ]

    def __str__(self) -> str:
        return f"{self.process_id}:{self.delivery_id}"
