"""Writing API processes: every change of definition is a new immutable version."""

from typing import Any

from django.db import transaction
from django.db.models import F
from django.dispatch import Signal

from automation.definitions import validate_definition
from automation.definitions.steps import find_step_type
from automation.exceptions import DefinitionInvalidError
from automation.functions import function_exists, function_params_check
from automation.models import Agent, ApiProcess, IndexStamp, ProcessTrigger, ProcessVersion
from automation.services.subprocesses import find_process
from entities.models import EntityType
from entities.services import unstorable_text

DEFINITION_KEYS = ("steps", "triggers")
# Kept only when set, so older definitions stay as they were: docs/user-guide/priority.md,
# waits.md (timezone), concurrency.md.
OPTIONAL_KEYS = ("priority", "timezone", "concurrency")


STORED_KEYS = {"Agent": (Agent, "key")}  # model name -> (model, its lookup field)


def stored_exists(model: str, name: str) -> bool:
    """Whether the stored thing a step names exists (an Agent, by its key; a process,
    by its slug or id)."""
    if model == "ApiProcess":
        return find_process(name) is not None
    model_class, field = STORED_KEYS[model]
    return model_class.objects.filter(**{field: name}).exists()


def definition_validate(definition: Any, *, slug: str | None = None) -> dict:
    """The definition part (steps, triggers, and the optional keys: priority, timezone,
    concurrency) of `definition`, or DefinitionInvalidError. `slug`: the process it is
    saved for, which none of its steps may run as a sub-process (a deeper cycle is
    stopped at run time, services.subprocesses)."""
    errors = validate_definition(definition, function_exists=function_exists,
                                 check_params=function_params_check,
                                 stored_exists=stored_exists)
    if not errors and slug is not None:
        errors = _calls_itself(definition, slug)
    if not errors:
        errors = _unstorable_fields({"": definition})
    if errors:
        first = next(iter(errors))
        raise DefinitionInvalidError(f"{first}: {errors[first][0]}", fields=errors)
    clean = {key: definition.get(key, []) for key in DEFINITION_KEYS}
    return {**clean, **{key: definition[key] for key in OPTIONAL_KEYS
                        if definition.get(key) is not None}}


def _calls_itself(definition: dict, slug: str) -> dict[str, list[str]]:
    own = find_process(slug)
    names = {slug} | ({str(own.pk)} if own is not None else set())
    errors: dict[str, list[str]] = {}
    for index, raw in enumerate(definition.get("steps", [])):
        kind = find_step_type(raw.get("type"))
        if kind is not None and kind.calls_process(raw) in names:
            errors[f"steps[{index}].config.process"] = [
                f"A process cannot run itself as a sub-process ('{slug}')."]
    return errors


KEEP = object()  # process_save: leave the field as it is


@transaction.atomic
def process_save(
    *, slug: str, name: str, definition: dict, description: str = "",
    entity_type: EntityType | None = None, enabled: bool = True, metadata: dict | None = None,
    user=None, parameters_schema: dict | None | object = KEEP,
) -> ApiProcess:
    """Create or update a process; a changed definition becomes a new version.
    `parameters_schema` (a JSON Schema, or None for none) is left as it is unless given."""
    clean = definition_validate(definition, slug=slug)
    errors = _unstorable_fields({"name": name, "description": description, "metadata": metadata})
    if errors:
        first = next(iter(errors))
        raise DefinitionInvalidError(f"{first}: {errors[first][0]}", fields=errors)
    process, _ = ApiProcess.objects.select_for_update().get_or_create(
        slug=slug, defaults={"name": name}
    )
    process.name, process.description = name, description
    process.entity_type, process.enabled = entity_type, enabled
    process.metadata = metadata if metadata is not None else process.metadata
    if parameters_schema is not KEEP:
        process.parameters_schema = parameters_schema
    if process.current_version is None or process.current_version.definition != clean:
        number = (
            process.versions.order_by("-number").values_list("number", flat=True).first() or 0
        ) + 1
        process.current_version = ProcessVersion.objects.create(
            process=process, number=number, definition=clean, created_by=user)
    process.full_clean()
    process.save()
    _sync_triggers(process)
    return process


def _unstorable_fields(values: dict[str, Any]) -> dict[str, list[str]]:
    """NUL characters and lone surrogates, by path: no database may store them."""
    errors: dict[str, list[str]] = {}
    for path, value in values.items():
        problem = unstorable_text(value, path)
        if problem:
            errors[problem[0]] = [problem[1]]
    return errors


@transaction.atomic
def process_set_enabled(*, process: ApiProcess, enabled: bool) -> ApiProcess:
    process.enabled = enabled
    process.save(update_fields=["enabled", "updated_at"])
    _sync_triggers(process)
    return process


def _sync_triggers(process: ApiProcess) -> None:
    """Flatten the current version's triggers into rows, then tell every index to rebuild."""
    ProcessTrigger.objects.filter(process=process).delete()
    if process.enabled and process.current_version:
        rows = []
        for position, trig in enumerate(process.current_version.definition.get("triggers", [])):
            config = trig.get("config") or {}
            rows.append(ProcessTrigger(
                process=process, version=process.current_version, position=position,
                type=trig["type"], entity_type_key=config.get("entityType", ""),
                status_key=config.get("status", ""), event_type=config.get("eventType", ""),
                path=config.get("path", ""), condition=trig.get("condition") or "", config=config,
            ))
        ProcessTrigger.objects.bulk_create(rows)
    index_changed()


# Sent once a change to any process's triggers has committed. The trigger index and the
# schedules listen (connected in automation.apps): services never import the triggers.
triggers_changed = Signal()


def index_changed() -> None:
    stamp, _ = IndexStamp.objects.get_or_create(pk=1)
    IndexStamp.objects.filter(pk=1).update(generation=F("generation") + 1)
    transaction.on_commit(_announce_index_change)


def _announce_index_change() -> None:
    triggers_changed.send(sender=ApiProcess)


def index_change_pending() -> bool:
    """Whether the current transaction changed a process's triggers: this process's
    index learns of it only at the commit (`_announce_index_change`), so until then it
    answers for the processes as they were. Read from the transaction's pending
    on-commit callbacks, which a rollback (of the transaction, or of the savepoint the
    change was made in) discards with the change."""
    connection = transaction.get_connection()
    return any(callback is _announce_index_change
               for _, callback, *_ in connection.run_on_commit)


@transaction.atomic
def process_delete(*, process: ApiProcess) -> None:
    """Delete a process with its versions, triggers and runs (the admin's delete; the API
    only disables). Every index and the schedules learn of it once the delete commits."""
    process.delete()
    index_changed()
