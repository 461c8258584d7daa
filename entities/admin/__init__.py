"""Admin for entities: types with their rules, entities, and the read-only logs."""

from entities.admin.entities import EntityAdmin
from entities.admin.logs import EntityEventAdmin, ExternalLinkAdmin
from entities.admin.types import EntityTypeAdmin

__all__ = ["EntityAdmin", "EntityEventAdmin", "EntityTypeAdmin", "ExternalLinkAdmin"]
