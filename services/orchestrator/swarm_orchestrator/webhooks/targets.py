"""Where a webhook may be sent: http or https URLs of public addresses only (unless
`webhook_allow_private`), so a tenant cannot make the orchestrator call what only it can
reach — a metadata service, the database, an admin port on localhost.

A URL is checked when the webhook is created (scheme, no credentials, a literal address
or `localhost`), and its host is resolved again at every attempt: the request goes to an
address just checked (the URL's host stays the `Host` header and TLS's server name), so a
name that resolves elsewhere later (DNS rebinding) reaches nothing private. Redirects are
not followed, and no proxy from the environment is used.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from swarm_orchestrator.errors import Forbidden, Invalid

__all__ = ["MAX_URL_CHARS", "Refused", "Target", "check_url", "is_public", "resolve"]

MAX_URL_CHARS = 2000
SCHEMES = ("http", "https")
_LOCAL_NAMES = ("localhost", "localhost.", "ip6-localhost", "ip6-loopback")


class Refused(Exception):
    """The URL's host is (or resolves to) an address webhooks may not reach."""


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_public(ip: IPAddress) -> bool:
    """A globally routable unicast address (an IPv4-mapped IPv6 one judged as IPv4)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def check_url(url: str, *, allow_private: bool) -> str:
    """The URL, if a webhook may use it: 422 `invalid_webhook_url` when it is no http(s)
    URL, 403 `webhook_url_not_allowed` when it names a non-public address."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Invalid(f"not a URL: {exc}", code="invalid_webhook_url") from None
    if parts.scheme.lower() not in SCHEMES or not parts.hostname:
        raise Invalid(
            "a webhook URL is http:// or https:// with a host", code="invalid_webhook_url"
        )
    if parts.username is not None or parts.password is not None:
        raise Invalid(
            "a webhook URL holds no credentials: the signature proves the sender",
            code="invalid_webhook_url",
        )
    if port == 0 or any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise Invalid("not a usable URL", code="invalid_webhook_url")
    host = parts.hostname.lower()
    ip = _literal(host)
    if not allow_private and (
        host in _LOCAL_NAMES
        or host.endswith(".localhost")
        or (ip is not None and not is_public(ip))
    ):
        raise Forbidden(
            f"webhooks may not be sent to {host}: not a public address "
            "(SWARM_WEBHOOK_ALLOW_PRIVATE allows it)",
            code="webhook_url_not_allowed",
        )
    return url


@dataclass(frozen=True)
class Target:
    """What a request to a webhook's URL is sent to."""

    url: httpx.URL
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, str] = field(default_factory=dict)


async def resolve(url: str, *, allow_private: bool) -> Target:
    """The URL pinned to an address of its host that was just resolved and checked;
    `Refused` when any of its addresses is not public (and `allow_private` is off)."""
    parsed = httpx.URL(url)
    if allow_private:
        return Target(parsed)
    host = parsed.host
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    ip = _literal(host)
    if ip is not None:
        found = [ip]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            raise Refused(f"cannot resolve {host}: {exc}") from None
        found = [ipaddress.ip_address(info[4][0]) for info in infos]
    private = [str(a) for a in found if not is_public(a)]
    if private or not found:
        raise Refused(f"{host} resolves to a non-public address ({', '.join(private)})")
    if ip is not None:
        return Target(parsed)
    netloc = host if parsed.port is None else f"{host}:{parsed.port}"
    extensions = {"sni_hostname": host} if parsed.scheme == "https" else {}
    return Target(parsed.copy_with(host=str(found[0])), {"Host": netloc}, extensions)
