"""`http.request`'s `response` option: the step's output built from the response.

`{"response": {"dealId": "response.body.id", "ok": "response.status == 200"}}` makes
the step's output `{"dealId": …, "ok": …}`. Each value is an expression
evaluated with `response` = `{status, headers, body}` (header names in lower case,
`body` parsed when the reply is JSON) next to the step's usual scope (`input`, `entity`,
`result`, `steps`, …). Without `response` the output is the whole response, as before.
Expressions are compiled when the function or step is saved, so a typo is a field error
then rather than a failed run later.
"""

from typing import Any

from automation.definitions.scope import STEP_NAMES
from automation.exceptions import StepFailedError
from entities.exceptions import ExpressionError
from entities.expressions import evaluate, validate_expression

PARAM = "response"
SCHEMA = {
    "type": "object", "minProperties": 1,
    "additionalProperties": {"type": "string", "minLength": 1},
    "description": "Output key → expression over `response` (status, headers, body).",
}


def mapping_errors(params: dict) -> dict[str, list[str]]:
    """`{"response.<key>": [message]}` for each expression that would not compile."""
    mapping = params.get(PARAM)
    if not isinstance(mapping, dict):
        return {}
    errors: dict[str, list[str]] = {}
    for key, source in mapping.items():
        if not isinstance(source, str):
            continue  # the schema reports it
        try:
            validate_expression(source, variables=STEP_NAMES | {PARAM}, where="in a mapping")
        except ExpressionError as exc:
            errors[f"{PARAM}.{key}"] = [exc.message]
    return errors


def map_response(mapping: dict, output: dict, scope: dict) -> dict[str, Any]:
    """The mapped output; an expression that fails names its key in the step error."""
    response = {key: output.get(key) for key in ("status", "headers", "body")}
    local = {**scope, PARAM: response}
    mapped = {}
    for key, source in mapping.items():
        try:
            mapped[key] = evaluate(source, local)
        except ExpressionError as exc:
            raise StepFailedError(
                f"Response mapping '{key}' failed: {exc.message}", code="response_mapping_failed",
                retryable=False, fields={f"{PARAM}.{key}": [exc.message]}) from None
    return mapped
