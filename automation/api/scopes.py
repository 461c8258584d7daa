"""Which scope an API call needs (docs/rest-api.md#scopes), declared, not listed per view.

A view may say `required_scope = "run"` (every method) or `{"POST": "run"}` (per method);
otherwise the method and the address decide, so a new endpoint is scoped without edits:

- GET, HEAD, OPTIONS need `read`;
- a write to a definition area's collection or item (`/api/workflow-definitions`,
  `/api/functions/{name}`, `/api/agents/...`, `/api/webhooks/{id}`) needs `define`;
- any other write (`POST /api/events`, `/api/executions/{id}/cancel`,
  `/api/workflow-definitions/{id}/trigger`: an action below an item) needs `run`.

`admin` allows everything. Staff users signed in to the admin are not limited by scopes.
tests/test_architecture.py fails if an API view has a method whose scope cannot be
resolved.
"""

from rest_framework.permissions import SAFE_METHODS, BasePermission

from automation.api.auth import ApiClientUser
from automation.models.clients import SCOPES

API_PREFIX = "/api/"
# The first segment under /api/ of the areas whose writes change definitions.
DEFINE_AREAS = frozenset({"workflow-definitions", "functions", "agents", "webhooks"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def required_scope(view_class: type, method: str, path: str) -> str | None:
    """The scope `method path` handled by `view_class` needs; None if none can be chosen
    (an unknown method): the permission then refuses the call."""
    method = method.upper()
    declared = getattr(view_class, "required_scope", None)
    if isinstance(declared, dict):
        declared = declared.get(method)
    if declared is not None:
        return declared if declared in SCOPES else None
    if method in SAFE_METHODS:
        return "read"
    if method not in WRITE_METHODS:
        return None
    segments = [s for s in path.removeprefix(API_PREFIX).split("/") if s]
    if segments and segments[0] in DEFINE_AREAS and len(segments) <= 2:
        return "define"
    return "run"


class HasScope(BasePermission):
    """An API client's token must carry the scope the call needs (403 in the error format)."""

    message = "This API client's scopes do not allow this request."

    def has_permission(self, request, view) -> bool:
        scope = required_scope(type(view), request.method, request.path)
        if scope is None:
            return False
        user = request.user
        if not isinstance(user, ApiClientUser):
            return True  # staff sessions (IsApiClientOrStaff already checked who it is)
        if user.api_client.allows(scope):
            return True
        self.message = (f"This API client lacks the '{scope}' scope needed for "
                        f"{request.method} {request.path}.")
        return False
