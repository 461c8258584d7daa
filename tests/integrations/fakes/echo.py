"""A generic HTTP endpoint for the HTTP/webhook connectors and the SSRF tests.

Routes: any path echoes the request as JSON; /status/<code> answers that status and
echoes the request headers (as a careless server would); /redirect?to=URL&status=302;
/slow?seconds=N; /big?bytes=N; /text.
"""

import json
import time

from werkzeug.wrappers import Response

from .server import FakeServer, json_response


class EchoServer(FakeServer):
    serialize = False

    def handle(self, request, body, listener):
        path = request.path
        echo = {"method": request.method, "path": path, "args": request.args.to_dict(),
                "headers": dict(request.headers), "body": body.decode("utf-8", "replace")}
        if path.startswith("/status/"):
            return json_response(echo, int(path.rsplit("/", 1)[1]))
        if path == "/redirect":
            return Response("", status=int(request.args.get("status", 302)),
                            headers={"Location": request.args["to"]})
        if path == "/slow":
            time.sleep(float(request.args.get("seconds", 2)))
            return json_response({"slow": True})
        if path == "/big":
            return Response(b"x" * int(request.args["bytes"]), content_type="text/plain")
        if path == "/text":
            return Response("plain text body", content_type="text/plain",
                            headers={"X-Secret-Internal": "leak", "ETag": '"abc"'})
        return Response(json.dumps(echo), content_type="application/json",
                        headers={"X-Request-Id": "req-1", "Set-Cookie": "session=abc"})
