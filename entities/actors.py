"""Who is acting: a user, an API client or a process, for the records a save writes.

The adapters say who acts (the API per request, the admin per save, the executor per
step) with `acting_as`; the outbox and the link writer read `current_actor()`, so no
service signature has to carry it (docs/user-guide/timeline.md). An actor is a short
string `kind:name`: `user:alice`, `client:erp`, `process:ship-order`; "" is unknown.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

KINDS = ("user", "client", "process")

_actor: ContextVar[str] = ContextVar("entityflow_actor", default="")


@contextmanager
def acting_as(actor: str) -> Iterator[None]:
    token = _actor.set(actor[:200])
    try:
        yield
    finally:
        _actor.reset(token)


def current_actor() -> str:
    return _actor.get()


def actor_view(actor: str | None) -> dict | None:
    """{"type": "user" | "client" | "process", "name": ...} or None when unknown."""
    if not actor:
        return None
    kind, _, name = actor.partition(":")
    return {"type": kind, "name": name} if kind in KINDS else {"type": "unknown", "name": actor}


class ActorMiddleware:
    """A request by a signed-in user (the admin, the pages) acts as `user:<username>`;
    the API names its own caller per request (automation.api.base), API clients too."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return self.get_response(request)
        with acting_as(f"user:{user.get_username()}"):
            return self.get_response(request)
