"""Shared helpers of the reliability suite: small entity types and processes, and
running calls in threads that start at the same moment."""

import threading
from collections.abc import Callable
from typing import Any

from django.db import connection

from automation.services.processes import process_save
from entities.models import EntityType, Status, Transition

NOOP = [{"id": "only", "type": "function", "function": "noop"}]


def flow_type(key: str = "flow", statuses: tuple[str, ...] = ("new", "received", "approved")
              ) -> EntityType:
    """A type whose statuses form a chain (new -> received -> approved), no requirements."""
    entity_type, _ = EntityType.objects.get_or_create(key=key, defaults={"name": key.title(),
                                                                        "schema": {}})
    rows = {}
    for position, status in enumerate(statuses):
        rows[status], _ = Status.objects.get_or_create(
            entity_type=entity_type, key=status,
            defaults={"label": status.title(), "is_initial": position == 0, "position": position})
    for source, target in zip(statuses, statuses[1:], strict=False):
        Transition.objects.get_or_create(entity_type=entity_type, source=rows[source],
                                         target=rows[target])
    return entity_type


def on_status(slug: str, entity_type: EntityType, status: str, steps: list | None = None):
    trigger = {"type": "status", "config": {"entityType": entity_type.key, "status": status}}
    return process_save(slug=slug, name=slug, entity_type=entity_type,
                        definition={"steps": steps or NOOP, "triggers": [trigger]})


def at_once(*calls: Callable[[], Any], timeout: float = 60) -> list[tuple[str, Any]]:
    """Run each call in its own thread (its own database connection), all released by one
    barrier. Returns ("ok", value) or ("error", exception) per call, in order."""
    barrier = threading.Barrier(len(calls))
    results: list[tuple[str, Any]] = [("error", TimeoutError("did not finish"))] * len(calls)

    def runner(i: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout)
            results[i] = ("ok", call())
        except BaseException as exc:  # noqa: BLE001  (reported to the test)
            results[i] = ("error", exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=runner, args=(i, call), daemon=True)
               for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(t.is_alive() for t in threads), "a thread is still running (deadlock?)"
    return results


def assert_error(response, status: int, code: str | None = None) -> dict:
    """The one error format of docs/rest-api.md."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "fields"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["fields"], dict)
    if code:
        assert body["error"]["code"] == code, body
    return body["error"]
