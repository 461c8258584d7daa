"""Outbound calls to internal addresses, through `http.request` and `webhook.post` steps
of real runs, with the allowlist emptied. A canary server listens on every local
address (IPv4 and, where the machine has it, IPv6) on one port: whatever form a URL
takes, if it reached this machine the canary would have seen it. The address guard's
own unit tests are in tests/integrations/test_outbound_guard.py."""

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pytest

from automation.models import Run, StepRun
from automation.services.processes import process_save
from automation.services.runs import run_start
from tests.integrations.fakes.echo import EchoServer

pytestmark = pytest.mark.django_db(transaction=True)


class _Canary(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802
        _Canary.hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    do_POST = do_GET  # noqa: N815

    def log_message(self, *args):
        pass


class DualStackServer(ThreadingHTTPServer):
    address_family = socket.AF_INET6

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


@pytest.fixture(scope="module")
def canary():
    """(port, has IPv6). Bound to every address: any local form of any port hits it."""
    try:
        server, ipv6 = DualStackServer(("::", 0), _Canary), True
    except OSError:
        server, ipv6 = ThreadingHTTPServer(("0.0.0.0", 0), _Canary), False  # noqa: S104
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield server.server_address[1], ipv6
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def _no_allowlist(settings):
    settings.ENTITYFLOW_OUTBOUND_ALLOWLIST = []
    _Canary.hits.clear()


def own_private_address() -> str | None:
    """This machine's address on its network, when that is a private one."""
    import ipaddress

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))  # no packet is sent
            address = probe.getsockname()[0]
        except OSError:
            return None
    ip = ipaddress.ip_address(address)
    return address if ip.is_private and not ip.is_loopback else None


LOCAL_FORMS = [  # each reaches the canary if the guard lets it through
    "127.0.0.1", "127.0.0.2", "localhost", "LOCALHOST.", "127.1", "2130706433", "0177.0.0.1",
    "0x7f000001", "0x7f.1", "0.0.0.0", "017700000001",
]
IPV6_FORMS = ["[::1]", "[::ffff:127.0.0.1]", "[0:0:0:0:0:ffff:7f00:1]", "[::]"]
ELSEWHERE = [  # not on this machine: refused before any connection is tried
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://[::ffff:169.254.169.254]/latest/meta-data/", "http://[fd00::1]/", "http://[fe80::1]/",
    "http://10.0.0.1/admin", "http://192.168.1.1/", "http://172.16.0.1/", "http://100.64.0.1/",
    "http://[fd00:ec2::254]/latest/meta-data/",
]


def targets(port: int, ipv6: bool) -> list[str]:
    hosts = LOCAL_FORMS + (IPV6_FORMS if ipv6 else [])
    own = own_private_address()
    if own:
        hosts.append(own)
    return [f"http://{host}:{port}/internal" for host in hosts] + ELSEWHERE


def one_step(slug: str, function: str, **params):
    return process_save(slug=slug, name=slug, definition={"steps": [
        {"id": "call", "type": "function", "function": function,
         "config": {"params": params, "retries": 2}}]})


def run_for(process) -> Run:
    started = time.monotonic()
    run, _ = run_start(process=process, trigger={"type": "manual"})
    run.refresh_from_db()
    assert time.monotonic() - started < 5, "a refused call must not wait for a timeout"
    return run


def assert_refused(run: Run, url: str) -> None:
    assert run.status == Run.Status.FAILED, (url, run.status, run.result)
    assert run.error["code"] in ("outbound_blocked", "connector_request_error"), (url, run.error)
    assert StepRun.objects.get(run=run).attempt == 1, url  # not worth a retry


def test_http_request_steps_never_reach_internal_addresses(canary):
    port, ipv6 = canary
    urls = targets(port, ipv6)
    for n, url in enumerate(urls):
        assert_refused(run_for(one_step(f"get-{n}", "http.request", url=url)), url)
    assert _Canary.hits == []
    assert len(urls) >= 20


def test_webhook_post_steps_never_reach_internal_addresses(canary):
    port, ipv6 = canary
    for n, url in enumerate(targets(port, ipv6)[:8]):
        process = one_step(f"hook-{n}", "webhook.post", url=url, secret="whsec-canary-123456",
                           payload={"n": n})
        assert_refused(run_for(process), url)
    assert _Canary.hits == []


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_to_internal_addresses_are_refused(canary, settings, status):
    """The first hop is allowed (the echo server, allowlisted); where it redirects is not."""
    port, ipv6 = canary
    settings.ENTITYFLOW_OUTBOUND_ALLOWLIST = ["127.0.0.1/32"]
    hosts = ["127.0.0.2", "2130706434", "0x7f000002", "0177.0.0.2", "0.0.0.0"]
    hosts += ["[::1]", "[::ffff:127.0.0.2]"] if ipv6 else []
    hosts += [own] if (own := own_private_address()) else []
    echo = EchoServer().start()
    try:
        for n, host in enumerate(hosts):
            target = f"http://{host}:{port}/after-redirect"
            url = f"{echo.url}/redirect?status={status}&to={quote(target, safe='')}"
            run = run_for(one_step(f"redirect-{status}-{n}", "http.request", url=url))
            assert_refused(run, target)
            assert "refused" in run.error["message"], run.error
    finally:
        echo.stop()
    assert _Canary.hits == []


def test_the_canary_does_see_what_the_allowlist_lets_through(canary, settings):
    """Control: the same step reaches the canary once its address is allowlisted."""
    port, _ = canary
    settings.ENTITYFLOW_OUTBOUND_ALLOWLIST = ["127.0.0.0/8"]
    run = run_for(one_step("allowed", "http.request", url=f"http://0x7f000002:{port}/allowed"))
    assert run.status == Run.Status.COMPLETED, run.error
    assert _Canary.hits == ["/allowed"]
