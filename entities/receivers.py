"""Signal receivers: thin adapters that hand over to the outbox."""

from entities import outbox


def record_entity_event(sender, instance, created, raw=False, **kwargs) -> None:
    if raw:  # loaddata: fixtures are not events
        return
    outbox.event_record_for_save(instance, created=created)


def bump_rules_version(sender, instance, **kwargs) -> None:
    """A status, transition or requirement changed: cached rules of its type are stale."""
    from django.db.models import F

    from entities.models import EntityType

    EntityType.objects.filter(pk=instance.entity_type_id).update(
        rules_version=F("rules_version") + 1
    )
