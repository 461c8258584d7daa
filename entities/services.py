"""Every write to entities goes through here."""

import re
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import IntegrityError, transaction
from jsonschema import Draft202012Validator

from entities.actors import current_actor
from entities.exceptions import (
    EntityDataInvalidError,
    StaleEntityError,
    TransitionNotAllowedError,
    UnstorableTextError,
)
from entities.models import Entity, EntityType, ExternalLink
from entities.requirements import TypeRules, failing, load_rules, settle


def entity_scope(entity: Entity) -> dict[str, Any]:
    """What requirement expressions see: `entity` (and `case` for the Case type)."""
    view = {
        "id": str(entity.id),
        "type": entity.entity_type.key,
        "reference": entity.reference,
        "status": entity.status,
        "data": entity.data or {},
    }
    return {"entity": view, "data": view["data"]}


UNSTORABLE_CHARACTERS = re.compile("[\x00\ud800-\udfff]")


def unstorable_text(value: Any, path: str = "") -> tuple[str, str] | None:
    """(path, problem) of the first string or object key in `value` holding a NUL
    character or a lone UTF-16 surrogate; None when there is none.

    PostgreSQL's text and JSON types refuse both (SQLite stores them as they come), so
    every write refuses them, on either database alike, before the driver sees them.
    The walk is iterative: it must not fail on deeply nested input."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            found = UNSTORABLE_CHARACTERS.search(item)
            if found:
                return where, _unstorable_message(found.group())
        elif isinstance(item, dict):
            for key, child in item.items():
                key = str(key)
                inner = f"{where}.{printable(key)}" if where else printable(key)
                found = UNSTORABLE_CHARACTERS.search(key)
                if found:
                    return inner, _unstorable_message(found.group(), key=True)
                stack.append((child, inner))
        elif isinstance(item, (list, tuple)):
            stack.extend((child, f"{where}[{i}]") for i, child in enumerate(item))
    return None


def printable(text: str) -> str:
    """`text` with NUL characters and lone surrogates written as \\uXXXX escapes."""
    return UNSTORABLE_CHARACTERS.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _unstorable_message(char: str, *, key: bool = False) -> str:
    what = "A key" if key else "Text"
    if char == "\x00":
        return f"{what} must not contain NUL characters (\\u0000)."
    return (f"{what} must not contain a lone UTF-16 surrogate (\\u{ord(char):04x}); "
            "send valid Unicode.")


def refuse_unstorable(value: Any, path: str) -> None:
    """UnstorableTextError naming the field, when `value` holds text no database stores."""
    problem = unstorable_text(value, path)
    if problem:
        where, message = problem
        raise UnstorableTextError(f"{where}: {message}", fields={where: [message]})


def validate_entity_data(entity_type: EntityType, data: Any) -> None:
    if not isinstance(data, dict):
        raise EntityDataInvalidError(
            "Entity data must be a JSON object.", fields={"data": ["Expected an object."]}
        )
    errors: dict[str, list[str]] = {}
    for error in Draft202012Validator(entity_type.schema or {}).iter_errors(data):
        path = ".".join(str(p) for p in error.absolute_path)
        if error.validator == "required" and error.validator_value:
            missing = error.message.split("'")[1] if "'" in error.message else ""
            path = ".".join(filter(None, [path, missing]))
        errors.setdefault(f"data.{path}" if path else "data", []).append(error.message)
    if errors:
        first = next(iter(errors))
        raise EntityDataInvalidError(f"{first}: {errors[first][0]}", fields=errors)


@transaction.atomic
def entity_create(
    *, entity_type: EntityType, reference: str, data: dict | None = None,
    status: str | None = None,
) -> Entity:
    """Create an entity in the type's initial status (or `status`), then settle it."""
    data = data or {}
    refuse_unstorable(reference, "reference")
    refuse_unstorable(data, "data")
    validate_entity_data(entity_type, data)
    rules = load_rules(entity_type)
    start = status or rules.initial
    if start not in rules.statuses:
        raise TransitionNotAllowedError(
            f"'{start}' is not a status of {entity_type.name}.",
            fields={"status": ["Unknown status."]},
        )
    entity = Entity(entity_type=entity_type, reference=reference, data=data)
    entity.set_initial_status(start)
    _settle_and_save(entity, rules, entered=[start], created=True)
    return entity


@transaction.atomic
def entity_update(
    *, entity: Entity, data: dict, expected_version: int | None = None, merge: bool = False
) -> Entity:
    """Replace (or merge into) the entity's data; requirements decide its status."""
    _check_version(entity, expected_version)
    new_data = {**(entity.data or {}), **data} if merge else data
    refuse_unstorable(new_data, "data")
    validate_entity_data(entity.entity_type, new_data)
    entity.data = new_data
    _settle_and_save(entity, load_rules(entity.entity_type), entered=[])
    return entity


@transaction.atomic
def entity_transition(
    *, entity: Entity, to_status: str, expected_version: int | None = None
) -> Entity:
    """Move the entity along a transition its type allows, if the target's requirements hold."""
    _check_version(entity, expected_version)
    rules = load_rules(entity.entity_type)
    allowed = rules.allowed_targets(entity.status)
    unmet = failing(rules, to_status, entity_scope(entity)) if to_status in allowed else []
    if unmet:
        raise TransitionNotAllowedError(
            f"Cannot enter '{to_status}': " + "; ".join(u["message"] for u in unmet),
            fields={"status": [u["message"] for u in unmet]},
        )
    source = entity.status
    entity.move_to(to_status, allowed=allowed)  # raises, unchanged, when not allowed
    _settle_and_save(entity, rules, entered=[to_status], came_from=source)
    return entity


def _check_version(entity: Entity, expected_version: int | None) -> None:
    """Optimistic lock: the row must still hold the version this writer read."""
    expected = entity.version if expected_version is None else expected_version
    current = (
        Entity.objects.select_for_update().filter(pk=entity.pk)
        .values_list("version", flat=True).first()
    )
    if current is None:
        raise StaleEntityError("The entity no longer exists.")
    if current != expected:
        raise StaleEntityError(
            f"{entity.reference} was changed by someone else (version {current}, "
            f"you had {expected}); reload it and try again."
        )
    entity.version = current


def _settle_and_save(
    entity: Entity, rules: TypeRules, *, entered: list[str], created=False,
    came_from: str | None = None,
):
    outcome = settle(rules, entity.status, entity_scope(entity), came_from=came_from)
    for target in outcome.entered:
        entity.move_to(target, allowed=rules.allowed_targets(entity.status))
    entity.unmet_requirements = outcome.unmet
    entity._entered_statuses = entered + outcome.entered
    if not created:
        entity.version += 1
    try:
        entity.full_clean(exclude=["status", "entity_type"], validate_unique=created)
    except ValidationError as exc:
        raise EntityDataInvalidError(
            "; ".join(v[0] if k == NON_FIELD_ERRORS else f"{k}: {v[0]}"
                      for k, v in exc.message_dict.items()),
            fields=exc.message_dict,
        ) from exc
    if created:
        try:
            with transaction.atomic():  # a savepoint: the caller's transaction stays usable
                entity.save(force_insert=True)
        except IntegrityError as exc:
            message = (
                f"{entity.entity_type.name} with reference '{entity.reference}' already exists."
            )
            raise EntityDataInvalidError(message, fields={"reference": [message]}) from exc
    else:
        entity.save(update_fields=["status", "data", "unmet_requirements", "version", "updated_at"])


@transaction.atomic
def external_link_upsert(
    *, entity: Entity, provider: str, object_type: str, external_id: str, url: str = ""
) -> ExternalLink:
    link, _ = ExternalLink.objects.update_or_create(
        entity=entity, provider=provider, object_type=object_type,
        defaults={"external_id": external_id, "url": url,
                  "actor": current_actor()},
    )
    return link
