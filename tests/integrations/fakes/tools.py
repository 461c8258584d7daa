"""Tool endpoints an agent's stored functions call (as signed `webhook.post` requests).

Each effect is counted once per delivery id (X-Entityflow-Delivery, derived from the
call's idempotency key), as a receiver that honours it would; every request is in
`calls`. `fail(name, times)` answers 500 that often; `hold(name)` keeps the next
request to that tool waiting until `release(name)`.
"""

import json
import threading

from .server import FakeServer, json_response


class ToolServer(FakeServer):
    serialize = False

    def __init__(self, answers: dict | None = None):
        super().__init__()
        self.answers = dict(answers or {})  # tool name -> the JSON it answers
        self.effects: dict[str, set[str]] = {}
        self.failures: dict[str, int] = {}
        self.held: dict[str, threading.Event] = {}
        self.arrived: dict[str, threading.Event] = {}

    def tool_url(self, name: str) -> str:
        return f"{self.url}/tools/{name}"

    def fail(self, name: str, times: int = 1) -> None:
        self.failures[name] = times

    def hold(self, name: str) -> None:
        self.held[name] = threading.Event()
        self.arrived[name] = threading.Event()

    def release(self, name: str) -> None:
        self.held.pop(name).set()

    def effect_count(self, name: str) -> int:
        return len(self.effects.get(name, ()))

    def requests_to(self, name: str) -> int:
        return self.count(f"/tools/{name}")

    def handle(self, request, body, listener):
        name = request.path.rsplit("/", 1)[-1]
        with self._state_lock:
            if self.failures.get(name):
                self.failures[name] -= 1
                return json_response({"error": "tool backend down"}, 500)
            delivery = request.headers.get("X-Entityflow-Delivery") or request.path
            self.effects.setdefault(name, set()).add(delivery)
        held, arrived = self.held.get(name), self.arrived.get(name)
        if held is not None:
            arrived.set()
            held.wait(30)
        payload = json.loads(body or b"null")
        return json_response({"tool": name, "received": payload, **self.answers.get(name, {})})
