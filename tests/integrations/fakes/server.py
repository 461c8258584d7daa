"""The threaded WSGI server shared by the fakes: recording and scripted responses."""

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def load_fixture(slug: str, name: str, **values) -> dict:
    """A sample payload from fixtures/<slug>/<name>.json with {placeholders} filled in."""
    data = json.loads((FIXTURES / slug / f"{name}.json").read_text())

    def fill(node):
        if isinstance(node, str):
            for key, value in values.items():
                node = node.replace("{" + key + "}", str(value))
            return node
        if isinstance(node, dict):
            return {k: fill(v) for k, v in node.items()}
        if isinstance(node, list):
            return [fill(v) for v in node]
        return node

    return fill(data)


def json_response(body, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers or {},
                    content_type="application/json")


@dataclass
class Call:
    listener: str
    method: str
    path: str
    query: dict
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body or b"null")


@dataclass
class Scripted:
    status: int
    body: object = None
    headers: dict = field(default_factory=dict)
    times: int = 1
    path: str | None = None
    content_type: str = "application/json"

    def response(self) -> Response:
        if isinstance(self.body, bytes | str):
            return Response(self.body, status=self.status, headers=self.headers,
                            content_type=self.content_type)
        return json_response(self.body, self.status, self.headers)


class FakeServer:
    """Subclasses implement `handle(request, body, listener)` and may name several
    listeners (Dropbox has an API host and a content host)."""

    listeners: tuple[str, ...] = ("main",)
    serialize = True  # handle one request at a time (the in-memory state is not locked)

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._scripted: list[Scripted] = []
        self._lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._servers: dict = {}
        self._threads: list[threading.Thread] = []

    def start(self):
        for name in self.listeners:
            server = make_server("127.0.0.1", 0, self._app(name), threaded=True)
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                                      daemon=True)
            thread.start()
            self._servers[name] = server
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in self._servers.values():
            server.shutdown()
            server.server_close()

    def url_for(self, listener: str) -> str:
        return f"http://127.0.0.1:{self._servers[listener].server_port}"

    @property
    def url(self) -> str:
        return self.url_for(self.listeners[0])

    def script(self, status: int, body=None, *, headers: dict | None = None, times: int = 1,
               path: str | None = None, content_type: str = "application/json") -> None:
        """Answer the next `times` requests (whose path starts with `path`) with this."""
        with self._lock:
            self._scripted.append(Scripted(status, body, headers or {}, times, path,
                                           content_type))

    def count(self, path: str | None = None, method: str | None = None,
              listener: str | None = None) -> int:
        return sum(1 for c in self.calls
                   if (path is None or c.path.startswith(path))
                   and (method is None or c.method == method)
                   and (listener is None or c.listener == listener))

    def _take_scripted(self, path: str) -> Scripted | None:
        for item in self._scripted:
            if item.path is None or path.startswith(item.path):
                item.times -= 1
                if item.times <= 0:
                    self._scripted.remove(item)
                return item
        return None

    def _app(self, listener: str):
        def wsgi(environ, start_response):
            request = Request(environ)
            body = request.get_data()
            with self._lock:
                self.calls.append(Call(listener, request.method, request.path,
                                       request.args.to_dict(), dict(request.headers), body))
                scripted = self._take_scripted(request.path)
            if scripted is not None:
                response = scripted.response()
            elif self.serialize:
                with self._state_lock:
                    response = self.handle(request, body, listener)
            else:
                response = self.handle(request, body, listener)
            return response(environ, start_response)

        return wsgi

    def handle(self, request: Request, body: bytes, listener: str) -> Response:
        raise NotImplementedError
