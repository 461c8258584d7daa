"""Outbound HTTP with an SSRF guard: every connector sends through `GuardedSession`.

Three layers, because each alone has a gap:
1. `check_url` refuses non-http(s) URLs and any host that is, or resolves to, a loopback,
   private, link-local, CGNAT, unique-local, multicast, reserved or unspecified address
   (including IPv4-mapped IPv6 and the decimal/octal/hex IPv4 spellings).
2. Redirects are never followed blindly: each Location is checked again (at most 5 hops),
   and credentials are dropped when a redirect leaves the original origin.
3. The connection itself checks the peer address it actually connected to, so a DNS
   answer that changes between the check and the connect (rebinding) is still refused.

`settings.ENTITYFLOW_OUTBOUND_ALLOWLIST` (hosts or CIDRs, a list or a comma-separated
string) lets named hosts or address ranges through, e.g. loopback fakes in tests.
"""

import ipaddress
import re
import socket
from collections.abc import Iterable
from urllib.parse import urljoin, urlsplit

import requests
import urllib3  # requests' own transport: the only place to see the connected peer
from django.conf import settings
from requests.adapters import HTTPAdapter
from requests.models import PreparedRequest
from urllib3.connection import HTTPConnection, HTTPSConnection

from integrations import tracing
from integrations.exceptions import (
    ConnectorBadResponseError,
    ConnectorError,
    ConnectorRequestError,
    ConnectorUnavailableError,
    OutboundBlockedError,
)

DEFAULT_TIMEOUT = 10.0
MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
SENSITIVE_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LOOSE_IPV4 = re.compile(r"^(0x[0-9a-f]*|\d+)(\.(0x[0-9a-f]*|\d+)){0,3}$", re.IGNORECASE)
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _allowlist() -> tuple[set[str], list]:
    raw = getattr(settings, "ENTITYFLOW_OUTBOUND_ALLOWLIST", None) or []
    if isinstance(raw, str):
        raw = raw.split(",")
    hosts, networks = set(), []
    for entry in raw:
        entry = str(entry).strip().lower().strip("[]").rstrip(".")
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            hosts.add(entry)
    return hosts, networks


def block_reason(ip: Address) -> str | None:
    """Why an address must not be reached, or None when it is a public address."""
    if ip.version == 6:
        inner = ip.ipv4_mapped or ip.sixtofour
        if inner is None and ip in _NAT64:
            inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if inner is not None:
            reason = block_reason(inner)
            return f"{reason} (inside an IPv6 address)" if reason else None
        if ip in _UNIQUE_LOCAL:
            return "unique-local"
    for attr, label in (
        ("is_unspecified", "unspecified"),
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_private", "private"),
        ("is_reserved", "reserved"),
    ):
        if getattr(ip, attr):
            return label
    if ip in _CGNAT:
        return "shared (carrier-grade NAT)"
    if ip.version == 6 and ip.is_site_local:
        return "site-local"
    return None if ip.is_global else "non-public"


def _refuse_if_blocked(host: str, ip: Address, networks: list) -> None:
    reason = block_reason(ip)
    if reason and not any(ip.version == n.version and ip in n for n in networks):
        raise OutboundBlockedError(
            f"Outbound request to {host} refused: {ip} is a {reason} address "
            "(add it to ENTITYFLOW_OUTBOUND_ALLOWLIST if this is intended)."
        )


def _literal_ip(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _LOOSE_IPV4.match(host):  # 2130706433, 0177.0.0.1, 0x7f.1: what the resolver accepts
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            raise OutboundBlockedError(f"{host} is not a valid IPv4 address.") from None
    return None


def _resolve(host: str, port: int) -> set[Address]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_NONAME:
            raise ConnectorRequestError(f"Host {host} does not exist.") from None
        raise ConnectorUnavailableError(f"Could not resolve host {host}.") from None
    except (UnicodeError, OSError):
        raise ConnectorRequestError(f"Host {host} cannot be resolved.") from None
    return {ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos}


def _target(url: str) -> tuple[str, int]:
    if not isinstance(url, str) or not url.strip():
        raise ConnectorRequestError("A URL is required.")
    scheme = urlsplit(url.strip()).scheme.lower()
    if scheme not in ("http", "https"):
        raise OutboundBlockedError(f"Only http and https URLs are allowed, not {scheme or 'none'}.")
    prepared = PreparedRequest()
    try:
        prepared.prepare_url(url, None)
        parts = urlsplit(prepared.url)
        host, port = (parts.hostname or "").rstrip("."), parts.port
    except (requests.RequestException, ValueError):
        raise ConnectorRequestError("The URL is not valid.") from None
    transport_host = (urllib3.util.parse_url(prepared.url).host or "").strip("[]").rstrip(".")
    if not host or transport_host.lower() != host:
        raise OutboundBlockedError("The URL's host is missing or ambiguous.")
    return host, port or (443 if scheme == "https" else 80)


def check_url(url: str) -> None:
    """Raise OutboundBlockedError unless `url` may be fetched (see the module docstring)."""
    check_host(*_target(url))


def check_host(host: str, port: int) -> str | None:
    """Raise OutboundBlockedError unless `host` may be reached; return the checked address
    to connect to, so a client that is not `requests` (a database driver) can pin it and a
    second DNS answer cannot differ. None: the host is allowlisted by name (use the name)."""
    host = host.lower().strip("[]").rstrip(".")
    hosts, networks = _allowlist()
    if host in hosts:
        return None
    literal = _literal_ip(host)
    addresses = [literal] if literal else sorted(_resolve(host, port), key=str)
    if not addresses:
        raise ConnectorUnavailableError(f"Could not resolve host {host}.")
    for ip in addresses:
        _refuse_if_blocked(host, ip, networks)
    return str(addresses[0])


def _check_peer(sock: socket.socket, host: str) -> None:
    hosts, networks = _allowlist()
    if host.lower().strip("[]").rstrip(".") in hosts:
        return
    try:
        peer = ipaddress.ip_address(sock.getpeername()[0].split("%")[0])
        _refuse_if_blocked(host, peer, networks)
    except OutboundBlockedError:
        sock.close()
        raise


class _GuardedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _check_peer(sock, self.host)
        return sock


class _GuardedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _check_peer(sock, self.host)
        return sock


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class GuardedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


def map_request_exception(exc: Exception, url: str) -> ConnectorError:
    """Turn a `requests` failure into a ConnectorError that names only the host."""
    host = urlsplit(url).hostname or "the server"
    if isinstance(exc, requests.Timeout):
        return ConnectorUnavailableError(f"{host} did not answer in time.")
    if isinstance(exc, requests.exceptions.SSLError):
        return ConnectorUnavailableError(f"The TLS connection to {host} failed.")
    if isinstance(exc, requests.ConnectionError | requests.exceptions.ChunkedEncodingError):
        return ConnectorUnavailableError(f"Could not connect to {host} or the connection broke.")
    if isinstance(exc, requests.exceptions.ContentDecodingError):
        return ConnectorBadResponseError(f"{host} sent a body that could not be decoded.")
    if isinstance(exc, ValueError | requests.exceptions.InvalidHeader):
        return ConnectorRequestError(f"The request to {host} is not valid ({type(exc).__name__}).")
    return ConnectorError(f"The request to {host} failed ({type(exc).__name__}).")


class GuardedSession(requests.Session):
    """A requests Session that checks every URL and redirect hop and always times out.

    Environment proxies are ignored on purpose (`trust_env = False`): a proxy resolves
    names itself, which would bypass the address checks.
    """

    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False
        self.sensitive_headers = set(SENSITIVE_HEADERS)
        adapter = GuardedAdapter()
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def request(self, method, url, *, timeout=None, allow_redirects=True, **kwargs):
        timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        if tracing.enabled():  # the caller's trace (a step's span) goes along: traceparent
            kwargs["headers"] = dict(kwargs.get("headers") or {})
            tracing.inject(kwargs["headers"])
        for _hop in range(MAX_REDIRECTS + 1):
            check_url(url)
            try:
                resp = super().request(
                    method, url, timeout=timeout, allow_redirects=False, **kwargs
                )
            except requests.RequestException as exc:
                raise map_request_exception(exc, url) from None
            location = resp.headers.get("Location")
            if not allow_redirects or resp.status_code not in REDIRECT_STATUSES or not location:
                return resp
            next_url = urljoin(resp.url, location)
            method, kwargs = self._redirected(method, resp.status_code, url, next_url, kwargs)
            resp.close()
            url = next_url
        raise ConnectorBadResponseError(
            f"{urlsplit(url).hostname} redirected more than {MAX_REDIRECTS} times."
        )

    def _redirected(self, method: str, status: int, old: str, new: str, kwargs: dict):
        kwargs = dict(kwargs)
        kwargs.pop("params", None)  # the Location already carries its query
        headers = dict(kwargs.get("headers") or {})
        method = method.upper()
        if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
            method = "GET"
            for key in ("data", "json", "files"):
                kwargs.pop(key, None)
            headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        if _origin(old) != _origin(new):  # None also removes a session-level header
            kwargs.pop("auth", None)
            headers = {k: v for k, v in headers.items() if k.lower() not in self.sensitive_headers}
            headers.update({name: None for name in self.sensitive_headers})
        kwargs["headers"] = headers
        return method, kwargs


def _origin(url: str) -> tuple:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


def guarded_session() -> GuardedSession:
    return GuardedSession()


def request(method: str, url: str, **kwargs) -> requests.Response:
    """One guarded request (body read eagerly); use guarded_session() to stream or reuse."""
    kwargs.pop("stream", None)
    with guarded_session() as session:
        return session.request(method, url, **kwargs)


def read_limited(resp: requests.Response, max_bytes: int) -> tuple[bytes, bool]:
    """Read a streamed body up to `max_bytes`; returns (data, truncated)."""
    chunks: list[bytes] = []
    total = 0
    try:
        for chunk in resp.iter_content(64 * 1024):
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                break
    except requests.RequestException as exc:
        raise map_request_exception(exc, resp.url) from None
    finally:
        resp.close()
    data = b"".join(chunks)
    return data[:max_bytes], total > max_bytes


def header_subset(headers: Iterable[tuple[str, str]], allowed: Iterable[str]) -> dict[str, str]:
    wanted = {name.lower() for name in allowed}
    return {name.lower(): value for name, value in headers if name.lower() in wanted}
