from django.apps import AppConfig


class EntitiesConfig(AppConfig):
    name = "entities"
    verbose_name = "Entities"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from entities import receivers
        from entities.models import Entity, Requirement, Status, Transition

        post_save.connect(
            receivers.record_entity_event, sender=Entity, dispatch_uid="entities.outbox"
        )
        for model in (Status, Transition, Requirement):
            for signal in (post_save, post_delete):
                signal.connect(
                    receivers.bump_rules_version,
                    sender=model,
                    dispatch_uid=f"entities.rules.{model.__name__}.{signal is post_save}",
                )
