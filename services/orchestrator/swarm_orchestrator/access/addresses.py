"""Which address a request comes from, for its rate-limit budget: the connection's own peer,
or, when that peer is a trusted reverse proxy (`SWARM_TRUSTED_PROXIES`), the client the
proxies name in `X-Forwarded-For`.

Only the proxies' own entries are believed: the header is read from the right, past the
trusted hops, and the first address that is not a trusted proxy is the client; whatever a
client wrote into the header itself sits further left and is never reached. uvicorn runs
with its own proxy-header handling off (`swarm_orchestrator.server`), so the peer is the
socket's, and a client cannot pick its budget by sending a header.

An IPv6 client is budgeted per /64: one host commonly holds a whole /64 and could otherwise
take a fresh address for every request.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from starlette.types import Scope

__all__ = ["ClientAddresses", "Network", "parse_networks"]

Network = IPv4Network | IPv6Network
IPV6_BUDGET_PREFIX = 64
"""IPv6 clients share one budget per network of this length."""


def parse_networks(text: str) -> tuple[Network, ...]:
    """`SWARM_TRUSTED_PROXIES`: addresses or CIDR networks, separated by commas."""
    found: list[Network] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            found.append(ip_network(part, strict=False))
        except ValueError:
            raise ValueError(
                f"SWARM_TRUSTED_PROXIES: {part!r} is neither an IP address nor a network "
                "such as 10.0.0.0/8"
            ) from None
    return tuple(found)


def _parse(entry: str) -> IPv4Address | IPv6Address | None:
    """An address as proxies write it: bare, `[v6]:port` or `v4:port`; an IPv4-mapped IPv6
    address (a dual-stack socket's) as the IPv4 address it is."""
    entry = entry.strip()
    if entry.startswith("["):
        entry = entry[1:].partition("]")[0]
    elif entry.count(":") == 1:
        entry = entry.partition(":")[0]
    try:
        address = ip_address(entry)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _forwarded_for(scope: Scope) -> list[str]:
    """Every `X-Forwarded-For` entry, in order, across repeated headers."""
    entries: list[str] = []
    for name, value in scope.get("headers") or ():
        if name == b"x-forwarded-for":
            entries.extend(bytes(value).decode("latin-1").split(","))
    return entries


class ClientAddresses:
    """Resolves a request's client address, trusting forwarded headers only from `trusted`."""

    def __init__(self, trusted: Iterable[Network] = ()) -> None:
        self.trusted = tuple(trusted)

    def _is_proxy(self, address: IPv4Address | IPv6Address) -> bool:
        return any(address in network for network in self.trusted)

    def client(self, scope: Scope) -> str:
        """The client's address (normalised), or the peer as given when it is no address."""
        peer = scope.get("client")
        host = str(peer[0]) if peer else "unknown"
        address = _parse(host)
        if address is None:
            return host
        if self.trusted:
            for entry in reversed(_forwarded_for(scope)):
                if not self._is_proxy(address):
                    break
                hop = _parse(entry)
                if hop is None:  # unreadable: keep the last hop a trusted proxy vouched for
                    break
                address = hop
        return str(address)

    def budget_subject(self, scope: Scope) -> str:
        """The rate-limit subject of the request's client: `addr:<address>`, an IPv6
        address widened to its /64."""
        client = self.client(scope)
        if isinstance(_parse(client), IPv6Address):
            client = str(ip_network(f"{client}/{IPV6_BUDGET_PREFIX}", strict=False))
        return f"addr:{client}"
