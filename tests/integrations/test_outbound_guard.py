import ipaddress
import socket
import time

import pytest
import requests

from integrations import net
from integrations.exceptions import (
    ConnectorBadResponseError,
    ConnectorError,
    ConnectorRequestError,
    ConnectorUnavailableError,
    OutboundBlockedError,
)

BLOCKED_URLS = [
    "http://127.0.0.1/",
    "http://127.0.0.2:8080/x",
    "http://[::1]/",
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",  # carrier-grade NAT
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://[fd12:3456::1]/",
    "http://0.0.0.0/",
    "http://[::]/",
    "http://224.0.0.1/",  # multicast
    "http://240.0.0.1/",  # reserved
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped IPv6
    "http://[::ffff:169.254.169.254]/",
    "http://[64:ff9b::7f00:1]/",  # NAT64 of 127.0.0.1
    "http://[2002:7f00:1::]/",  # 6to4 of 127.0.0.1
    "http://2130706433/",  # decimal 127.0.0.1
    "http://0177.0.0.1/",  # octal
    "http://0x7f.1/",  # hex, short form
    "http://0x7f000001/",
    "http://127.1/",
    "http://017700000001/",
    "http://localhost/",  # resolves to loopback
    "http://LOCALHOST./",
    "https://user:pass@127.0.0.1/",
]


@pytest.mark.parametrize("url", BLOCKED_URLS)
def test_check_url_refuses_internal_addresses(no_allowlist, url):
    with pytest.raises(OutboundBlockedError) as exc:
        net.check_url(url)
    assert not exc.value.retryable
    assert "ENTITYFLOW_OUTBOUND_ALLOWLIST" in str(exc.value) or "valid" in str(exc.value)


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.com/", "gopher://127.0.0.1:70/", "dict://x/",
            "javascript:alert(1)", "//example.com/path"]
)
def test_check_url_refuses_other_schemes(no_allowlist, url):
    with pytest.raises(OutboundBlockedError, match="Only http and https"):
        net.check_url(url)


@pytest.mark.parametrize("url", ["http:///nohost", "http://:80/", "", "   "])
def test_check_url_refuses_missing_hosts(no_allowlist, url):
    with pytest.raises(ConnectorError):
        net.check_url(url)


def test_backslash_tricks_are_checked_as_sent(no_allowlist, monkeypatch):
    """`http://a\\@127.0.0.1/` is sent to host a (the backslash starts the path)."""
    monkeypatch.setattr(net, "_resolve", lambda host, port: {ipaddress.ip_address("10.0.0.1")}
                        if host == "evil.example" else set())
    with pytest.raises(OutboundBlockedError, match="evil.example"):
        net.check_url("http://evil.example\\@127.0.0.1/")


def test_check_url_allows_public_literals(no_allowlist):
    net.check_url("http://93.184.216.34/")
    net.check_url("https://[2606:2800:220:1:248:1893:25c8:1946]/")
    net.check_url("http://[::ffff:93.184.216.34]/")


def _fake_dns(monkeypatch, answers: dict[str, list[str]]):
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in answers:
            return [(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                     (ip, port)) for ip in answers[host]]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_check_url_checks_every_resolved_address(no_allowlist, monkeypatch):
    _fake_dns(monkeypatch, {"public.example": ["93.184.216.34"],
                            "internal.example": ["10.1.2.3"],
                            "mixed.example": ["93.184.216.34", "127.0.0.1"],
                            "v6.example": ["fd00::5"]})
    net.check_url("https://public.example/path")
    for host in ("internal.example", "mixed.example", "v6.example"):
        with pytest.raises(OutboundBlockedError, match=host):
            net.check_url(f"https://{host}/")


def test_unknown_host_is_a_request_error(no_allowlist):
    with pytest.raises(ConnectorRequestError, match="does not exist"):
        net.check_url("http://no-such-host.invalid/")


def test_allowlist_hosts_and_cidrs(override):
    override(ENTITYFLOW_OUTBOUND_ALLOWLIST=["localhost", "10.0.0.0/8", "[fd00::1]"])
    net.check_url("http://localhost:8000/")
    net.check_url("http://10.20.30.40/")
    net.check_url("http://[fd00::1]/")
    with pytest.raises(OutboundBlockedError):
        net.check_url("http://192.168.0.1/")
    with pytest.raises(OutboundBlockedError):
        net.check_url("http://127.0.0.1/")  # "localhost" allows the name, not the address


def test_allowlist_accepts_a_comma_separated_string(override):
    override(ENTITYFLOW_OUTBOUND_ALLOWLIST="127.0.0.1, 192.168.0.0/16")
    net.check_url("http://127.0.0.1:9/")
    net.check_url("http://192.168.7.7/")
    with pytest.raises(OutboundBlockedError):
        net.check_url("http://10.0.0.1/")


def test_block_reason_labels():
    assert net.block_reason(ipaddress.ip_address("127.0.0.1")) == "loopback"
    assert net.block_reason(ipaddress.ip_address("169.254.169.254")) == "link-local"
    assert net.block_reason(ipaddress.ip_address("100.64.1.1")) == "shared (carrier-grade NAT)"
    assert net.block_reason(ipaddress.ip_address("fc00::1")) == "unique-local"
    assert net.block_reason(ipaddress.ip_address("8.8.8.8")) is None


def test_fake_is_refused_unless_allowlisted(echo_server, override):
    override(ENTITYFLOW_OUTBOUND_ALLOWLIST=[])
    with pytest.raises(OutboundBlockedError):
        net.request("GET", echo_server.url + "/hello")
    assert echo_server.count() == 0
    override(ENTITYFLOW_OUTBOUND_ALLOWLIST=["127.0.0.1"])
    assert net.request("GET", echo_server.url + "/hello").json()["path"] == "/hello"
    assert echo_server.count() == 1


def test_redirect_to_metadata_address_is_refused(echo_server):
    target = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
    with pytest.raises(OutboundBlockedError, match="169.254.169.254"):
        net.request("GET", echo_server.url + "/redirect", params={"to": target})
    assert echo_server.count() == 1


def test_redirect_to_a_loopback_address_outside_the_allowlist_is_refused(echo_server):
    port = echo_server.url.rsplit(":", 1)[1]
    for target in (f"http://127.0.0.2:{port}/hello", f"http://[::1]:{port}/", "http://10.0.0.1/"):
        with pytest.raises(OutboundBlockedError):
            net.request("GET", echo_server.url + "/redirect", params={"to": target})
    assert echo_server.count(path="/hello") == 0


def test_redirect_does_not_repeat_query_params(echo_server):
    resp = net.request("GET", echo_server.url + "/redirect", params={"to": "/landing?x=1"})
    assert resp.json()["args"] == {"x": "1"}


def test_allowed_redirects_are_followed_and_see_303_as_get(echo_server):
    resp = net.request("POST", echo_server.url + "/redirect",
                       params={"to": "/landing", "status": "303"}, json={"a": 1})
    assert resp.json()["method"] == "GET"
    assert resp.json()["path"] == "/landing"
    resp = net.request("POST", echo_server.url + "/redirect",
                       params={"to": "/landing", "status": "307"}, json={"a": 1})
    assert resp.json()["method"] == "POST"
    assert resp.json()["body"] == '{"a": 1}'


def test_cross_origin_redirect_drops_credentials(echo_server, override):
    override(ENTITYFLOW_OUTBOUND_ALLOWLIST=["127.0.0.1", "localhost", "::1"])
    port = echo_server.url.rsplit(":", 1)[1]
    session = net.guarded_session()
    session.headers["Cookie"] = "session=1"
    resp = session.request("GET", echo_server.url + "/redirect",
                           params={"to": f"http://localhost:{port}/next"},
                           headers={"Authorization": "Bearer secret-token", "X-Keep": "1"})
    seen = resp.json()["headers"]
    assert "Authorization" not in seen and "Cookie" not in seen
    assert seen["X-Keep"] == "1"


def test_too_many_redirects(echo_server):
    chain = "/final"
    for _ in range(net.MAX_REDIRECTS + 2):
        chain = "/redirect?to=" + requests.utils.quote(chain, safe="")
    with pytest.raises(ConnectorBadResponseError, match="redirected more than"):
        net.request("GET", echo_server.url + chain)
    assert echo_server.count() == net.MAX_REDIRECTS + 1


def test_dns_rebinding_is_caught_at_connect_time(echo_server, no_allowlist, monkeypatch):
    """The check saw a public address; the connection then went to loopback."""
    port = int(echo_server.url.rsplit(":", 1)[1])
    monkeypatch.setattr(net, "_resolve", lambda host, p: {ipaddress.ip_address("93.184.216.34")})
    _fake_dns(monkeypatch, {"rebind.example": ["127.0.0.1"]})
    with pytest.raises(OutboundBlockedError, match="127.0.0.1"):
        net.request("GET", f"http://rebind.example:{port}/secret")
    assert echo_server.count() == 0


def test_timeouts_and_refused_connections_become_unavailable(echo_server):
    started = time.monotonic()
    with pytest.raises(ConnectorUnavailableError, match="did not answer in time"):
        net.request("GET", echo_server.url + "/slow", params={"seconds": 2}, timeout=0.3)
    assert time.monotonic() - started < 1.5
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    free_port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(ConnectorUnavailableError, match="Could not connect"):
        net.request("GET", f"http://127.0.0.1:{free_port}/")


def test_every_request_gets_a_timeout(echo_server, monkeypatch):
    seen = {}
    original = requests.Session.request

    def spy(self, method, url, **kwargs):
        seen["timeout"] = kwargs.get("timeout")
        return original(self, method, url, **kwargs)

    monkeypatch.setattr(requests.Session, "request", spy)
    net.request("GET", echo_server.url + "/")
    assert seen["timeout"] == net.DEFAULT_TIMEOUT


def test_read_limited_caps_the_body(echo_server):
    session = net.guarded_session()
    resp = session.request("GET", echo_server.url + "/big", params={"bytes": 5000}, stream=True)
    data, truncated = net.read_limited(resp, 1000)
    assert len(data) == 1000 and truncated
    resp = session.request("GET", echo_server.url + "/big", params={"bytes": 10}, stream=True)
    assert net.read_limited(resp, 1000) == (b"x" * 10, False)
