"""Who is calling: an API client with a bearer token, or a staff user with a session."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission

from automation.models import ApiClient
from automation.services.api_auth import ApiAuthError, token_client, token_client_with
from entities.db.compiled import CompiledLookup
from entities.services import unstorable_text

REALM = 'Bearer realm="entityflow"'


class ApiClientUser:
    """request.user for a call made with an API client's token (not a Django user)."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = id = None

    def __init__(self, client: ApiClient):
        self.api_client = client
        self.username = f"client:{client.key}"

    def __str__(self) -> str:
        return self.username


class BearerAuthentication(BaseAuthentication):
    """`Authorization: Bearer <accessToken>`; tokens are looked up by their SHA-256."""

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != b"bearer":
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Use 'Authorization: Bearer <accessToken>'.")
        along = _read_along(request)
        try:
            raw = parts[1].decode("ascii")
            if along is None:
                client = token_client(raw)
            else:
                client, row = token_client_with(raw, *along)
                setattr(request, _READ_ALONG, (along, row))
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("The access token is not valid.") from None
        except ApiAuthError as exc:
            raise exceptions.AuthenticationFailed(exc.message) from None
        return ApiClientUser(client), client

    def authenticate_header(self, request) -> str:
        return REALM


_READ_ALONG = "_entityflow_read_along"


def _read_along(request) -> tuple[CompiledLookup, str] | None:
    """(look-up, value) of the row the request's view reads with the token: the view's
    `reads_with_token`, (a CompiledLookup, the URL keyword whose value it looks up). None
    when it declares none, or the value could not be stored (the address check answers
    for it: PostgreSQL would refuse to look it up)."""
    context = getattr(request, "parser_context", None) or {}
    declared = getattr(context.get("view"), "reads_with_token", None)
    if declared is None:
        return None
    lookup, keyword = declared
    value = (context.get("kwargs") or {}).get(keyword)
    if not isinstance(value, str) or unstorable_text(value):
        return None
    return lookup, value


def read_with_token(request, lookup: CompiledLookup, value: str):
    """`lookup.first(value)`: the row read in the token's own statement when the view
    declares it (`reads_with_token`; on PostgreSQL one round trip fewer, docs/
    performance.md, "The API trigger on PostgreSQL: round trips and DRF's share"), else
    read now. Taken once: a view run again after a lost connection (entities.db.db_loss)
    reads it again, and nothing read for one request is kept for another."""
    read = vars(request).pop(_READ_ALONG, None)
    if read is not None and read[0] == (lookup, value):
        return read[1]
    return lookup.first(value)


class IsApiClientOrStaff(BasePermission):
    message = "Only API clients and staff users may use the API."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if isinstance(user, ApiClientUser):
            return True
        return bool(user and user.is_authenticated and user.is_active and user.is_staff)


def principal(request) -> str:
    """A stable name for the caller: `client:<id>` or `user:<id>`."""
    user = request.user
    if isinstance(user, ApiClientUser):
        return f"client:{user.api_client.pk}"
    return f"user:{user.pk}"


def actor_of(request) -> str:
    """Who the request acts as in the records it writes (entities.actors): `client:<key>`
    or `user:<username>`; "" before authentication."""
    user = getattr(request, "user", None)
    if isinstance(user, ApiClientUser):
        return f"client:{user.api_client.key}"
    if user is not None and user.is_authenticated:
        return f"user:{user.get_username()}"
    return ""


def django_user(request):
    """The Django user behind the request, or None for an API client."""
    return None if isinstance(request.user, ApiClientUser) else request.user


class BearerScheme(OpenApiAuthenticationExtension):
    target_class = "automation.api.auth.BearerAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer",
                "description": "An accessToken from POST /api/auth/authorize."}
