"""Reads."""

from django.db.models import QuerySet

from entities.models import Entity, EntityType


def entity_list(*, entity_type: EntityType | str | None = None, status: str | None = None,
                search: str | None = None) -> QuerySet[Entity]:
    qs = Entity.objects.select_related("entity_type")
    if entity_type is not None:
        qs = qs.filter(**({"entity_type__key": entity_type} if isinstance(entity_type, str)
                          else {"entity_type": entity_type}))
    if status:
        qs = qs.filter(status=status)
    if search:
        qs = qs.filter(reference__icontains=search)
    return qs


def entity_type_get(key: str) -> EntityType:
    return EntityType.objects.get(key=key)


def external_link_get(*, entity: Entity, provider: str, object_type: str):
    return entity.external_links.filter(provider=provider, object_type=object_type).first()


def entity_filter(qs: QuerySet[Entity], spec: dict) -> QuerySet[Entity]:
    """The filters of the control panel and the batch API (unknown keys are ignored).

    spec keys: status, search, createdFrom, createdTo, updatedFrom, updatedTo,
    hasLink (provider), lacksLink (provider).
    """
    lookups = {"status": "status", "createdFrom": "created_at__gte", "createdTo": "created_at__lte",
               "updatedFrom": "updated_at__gte", "updatedTo": "updated_at__lte"}
    for key, lookup in lookups.items():
        if spec.get(key):
            qs = qs.filter(**{lookup: spec[key]})
    if spec.get("search"):
        qs = qs.filter(reference__icontains=spec["search"])
    if spec.get("hasLink"):
        qs = qs.filter(external_links__provider=spec["hasLink"]).distinct()
    if spec.get("lacksLink"):
        qs = qs.exclude(external_links__provider=spec["lacksLink"])
    return qs
