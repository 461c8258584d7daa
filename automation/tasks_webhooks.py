"""django-q2 adapter for outbound webhook deliveries: the service decides everything
(whether the delivery is due, the retry schedule), so a redelivered task is harmless."""


def deliver(delivery_id: str) -> None:
    from automation.services.webhooks import delivery_attempt

    delivery_attempt(delivery_id=delivery_id)
