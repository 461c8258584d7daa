from integrations.schema import validate

SCHEMA = {"type": "object", "required": ["name"], "additionalProperties": False,
          "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 5},
                         "count": {"type": "integer", "minimum": 1, "maximum": 3},
                         "tags": {"type": "array", "minItems": 1, "maxItems": 2,
                                  "items": {"type": "string"}},
                         "mode": {"enum": ["a", "b"]},
                         "flag": {"type": "boolean"}}}


def test_valid_values_pass():
    assert validate(SCHEMA, {"name": "x", "count": 2, "tags": ["t"], "mode": "a",
                             "flag": True}) == {}
    assert validate(SCHEMA, {"name": "x", "count": 2.0}) == {}


def test_each_keyword_reports_a_field_error():
    assert validate(SCHEMA, {"name": "", "count": 9, "tags": [], "mode": "c", "flag": 1,
                             "other": 1}) == {
        "name": ["must not be empty"], "count": ["must be at most 3"],
        "tags": ["must have at least 1 items"], "mode": ["must be one of 'a', 'b'"],
        "flag": ["must be of type boolean"], "other": ["is not an allowed field"]}
    assert validate(SCHEMA, {"name": "toolong", "tags": ["a", 2, "c"]}) == {
        "name": ["must be at most 5 characters"], "tags": ["must have at most 2 items"],
        "tags[1]": ["must be of type string"]}
    assert validate(SCHEMA, []) == {"params": ["must be of type object"]}


def test_booleans_are_not_numbers_and_required_can_be_skipped():
    assert validate(SCHEMA, {"name": "x", "count": True}) == {
        "count": ["must be of type integer"]}
    assert validate(SCHEMA, {}) == {"name": ["is required"]}
    assert validate(SCHEMA, {}, partial=True) == {}
