"""PreparedScope: many expressions against one scope give what a plain dict gives."""

import pytest

from entities.exceptions import ExpressionEvaluationError
from entities.expressions import PreparedScope, evaluate

SCOPE = {"entity": {"data": {"total": 12000, "tags": ["a", "b"]}, "status": "approved"},
         "input": {"n": 2}}


@pytest.mark.parametrize("source", [
    "entity.data.total > 10000", "entity.status == 'approved' && input.n == 2",
    "size(entity.data.tags)", "entity.data.tags.map(t, t + '!')", "has(entity.data.email)"])
def test_same_answers_as_a_plain_dict(source):
    prepared = PreparedScope(SCOPE)
    assert evaluate(source, prepared) == evaluate(source, SCOPE)
    assert evaluate(source, prepared) == evaluate(source, SCOPE)  # the cached context again


def test_same_errors_as_a_plain_dict():
    prepared = PreparedScope(SCOPE)
    with pytest.raises(ExpressionEvaluationError) as plain:
        evaluate("entity.data.missing.deep > 1", SCOPE)
    with pytest.raises(ExpressionEvaluationError) as cached:
        evaluate("entity.data.missing.deep > 1", prepared)
    assert cached.value.message == plain.value.message
    with pytest.raises(ExpressionEvaluationError):
        evaluate("nothing > 1", prepared)
