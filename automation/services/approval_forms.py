"""A human step's `config.form`: a JSON Schema (an object) for what the person enters.

The same schema validates the API's `data` and is rendered as fields in the inbox and on
the one-click link page (docs/user-guide/human-tasks.md). Only a flat object is rendered: strings
(an `enum` becomes a choice), numbers, integers and booleans; the definition check
refuses anything else, so every form can be filled in.
"""

from dataclasses import dataclass

from jsonschema import Draft202012Validator

from automation.exceptions import AutomationError


class FormDataError(AutomationError):
    """What the person entered does not fit the form: `errors` field -> messages; the
    API names them as `data.<field>`."""

    code = "invalid"
    http_status = 422

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        first = next(iter(errors.items()))
        super().__init__(f"{first[0] or 'data'}: {first[1][0]}",
                         fields={f"data.{k}" if k else "data": v for k, v in errors.items()})


@dataclass
class FormField:
    name: str
    type: str
    label: str
    help: str
    required: bool
    choices: list
    value: object
    errors: list[str]

    @property
    def input_type(self) -> str:
        return {"number": "number", "integer": "number", "boolean": "checkbox"}.get(
            self.type, "text")

    @property
    def step(self) -> str:
        return "1" if self.type == "integer" else "any"


def form_fields(form: dict | None, values: dict | None = None,
                errors: dict | None = None) -> list[FormField]:
    """The form's fields to render, with the values entered and their errors."""
    if not form:
        return []
    required = set(form.get("required") or [])
    values, errors = values or {}, errors or {}
    return [FormField(name=name, type=prop.get("type", "string"),
                      label=prop.get("title") or name, help=prop.get("description", ""),
                      required=name in required, choices=list(prop.get("enum") or []),
                      value=values.get(name, prop.get("default", "")),
                      errors=errors.get(name, []))
            for name, prop in (form.get("properties") or {}).items()]


def form_from_post(form: dict | None, post) -> dict:
    """A browser form's strings turned into the JSON the schema describes. A number that
    is not one is kept as the text, so the schema names the field."""
    if not form:
        return {}
    data = {}
    for name, prop in (form.get("properties") or {}).items():
        kind = prop.get("type")
        if kind == "boolean":
            data[name] = post.get(f"data.{name}") in ("on", "true", "1")
            continue
        raw = (post.get(f"data.{name}") or "").strip()
        if raw == "":
            continue  # left empty: `required` says whether that is allowed
        if kind in ("number", "integer"):
            try:
                number = float(raw)
                data[name] = int(number) if kind == "integer" and number.is_integer() else number
            except ValueError:
                data[name] = raw
        else:
            data[name] = raw
    return data


def form_clean(form: dict | None, data) -> dict:
    """`data` checked against the form: the data, or FormDataError naming each field."""
    if not form:
        return data if isinstance(data, dict) else {}
    if not isinstance(data, dict):
        raise FormDataError({"": ["Enter the form's fields as an object."]})
    errors: dict[str, list[str]] = {}
    for error in Draft202012Validator(form).iter_errors(data):
        if error.validator == "required":
            # "'amount' is a required property": the missing field is the first quoted word
            name = error.message.split("'")[1] if "'" in error.message else ""
            errors.setdefault(name, []).append("This field is required.")
        else:
            name = ".".join(str(p) for p in error.absolute_path)
            errors.setdefault(name, []).append(_message(error))
    if errors:
        raise FormDataError(errors)
    return data


def _message(error) -> str:
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "type":
        return f"Enter a{'n' if schema.get('type') == 'integer' else ''} {schema.get('type')}."
    if error.validator == "enum":
        return f"Choose one of: {', '.join(map(str, schema.get('enum') or []))}."
    bounds = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "more than",
              "exclusiveMaximum": "less than"}
    if error.validator in bounds:
        return f"Must be {bounds[error.validator]} {error.validator_value}."
    return error.message
