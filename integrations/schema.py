"""A small JSON Schema subset for action params (the app imports no schema library).

Supported keywords: type (name or list), properties, required, additionalProperties
(bool or schema), enum, minLength, maxLength, minimum, maximum, items, minItems,
maxItems, anyOf. Errors come back as `{field path: [messages]}`; `params` names the
params object itself.
"""

from typing import Any

ROOT = "params"

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list, tuple),
    "null": (type(None),),
}


def validate(schema: dict, value: Any, *, partial: bool = False) -> dict[str, list[str]]:
    """Validate `value`; with `partial` the `required` keyword is skipped at every level
    (for function config saved before the step input that completes it is known)."""
    errors: dict[str, list[str]] = {}
    _check(schema, value, "", errors, partial)
    return errors


def _is_type(value: Any, name: str) -> bool:
    if name in ("integer", "number") and isinstance(value, bool):
        return False
    if name == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES[name])


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _check(schema: dict, value: Any, path: str, errors: dict, partial: bool) -> None:
    def add(message: str) -> None:
        errors.setdefault(path or ROOT, []).append(message)

    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(_is_type(value, name) for name in names):
            add(f"must be of type {' or '.join(names)}")
            return
    if "enum" in schema and value not in schema["enum"]:
        add("must be one of " + ", ".join(repr(v) for v in schema["enum"]))
    if "anyOf" in schema and not partial:
        if all(validate(sub, value) for sub in schema["anyOf"]):
            add(schema.get("anyOfMessage", "does not match any allowed form"))
    if isinstance(value, str):
        _check_string(schema, value, add)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        _check_number(schema, value, add)
    elif isinstance(value, dict):
        _check_object(schema, value, path, errors, partial, add)
    elif isinstance(value, list | tuple):
        _check_array(schema, value, path, errors, partial, add)


def _check_string(schema: dict, value: str, add) -> None:
    if len(value) < schema.get("minLength", 0):
        add("must not be empty" if schema["minLength"] == 1 else "is too short")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        add(f"must be at most {schema['maxLength']} characters")


def _check_number(schema: dict, value: float, add) -> None:
    if "minimum" in schema and value < schema["minimum"]:
        add(f"must be at least {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        add(f"must be at most {schema['maximum']}")


def _check_object(schema, value: dict, path, errors, partial, add) -> None:
    props = schema.get("properties", {})
    if not partial:
        for name in schema.get("required", []):
            if name not in value:
                errors.setdefault(_join(path, name), []).append("is required")
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        if key in props:
            _check(props[key], item, _join(path, key), errors, partial)
        elif extra is False:
            errors.setdefault(_join(path, key), []).append("is not an allowed field")
        elif isinstance(extra, dict):
            _check(extra, item, _join(path, key), errors, partial)


def _check_array(schema, value, path, errors, partial, add) -> None:
    if len(value) < schema.get("minItems", 0):
        add(f"must have at least {schema['minItems']} items")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        add(f"must have at most {schema['maxItems']} items")
    if isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            _check(schema["items"], item, _join(path, index), errors, partial)
