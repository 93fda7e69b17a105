"""The client address a request's budget is charged to (`access/addresses.py`): the peer, or
behind trusted proxies the client they name; IPv6 per /64; the setting checked at start."""

from __future__ import annotations

from typing import Any

import pytest

from swarm_orchestrator.access.addresses import ClientAddresses, parse_networks
from swarm_orchestrator.api.app import create_app
from swarm_orchestrator.settings import OrchestratorSettings

TRUSTED = parse_networks("127.0.0.1, 10.0.0.0/8")


@pytest.mark.parametrize(
    ("trusted", "peer", "forwarded_for", "subject"),
    [
        ((), "127.0.0.1", "203.0.113.9", "addr:127.0.0.1"),
        (TRUSTED, "127.0.0.1", None, "addr:127.0.0.1"),
        (TRUSTED, "127.0.0.1", "203.0.113.9", "addr:203.0.113.9"),
        (TRUSTED, "127.0.0.1", "6.6.6.6, 203.0.113.9", "addr:203.0.113.9"),
        (TRUSTED, "127.0.0.1", "203.0.113.9, 10.1.2.3", "addr:203.0.113.9"),
        (TRUSTED, "198.51.100.7", "203.0.113.9", "addr:198.51.100.7"),
        (TRUSTED, "127.0.0.1", "garbage", "addr:127.0.0.1"),
        (TRUSTED, "127.0.0.1", "192.0.2.1:8080", "addr:192.0.2.1"),
        (TRUSTED, "127.0.0.1", "[2001:db8::1]:443", "addr:2001:db8::/64"),
        (TRUSTED, "10.0.0.1", "10.0.0.2", "addr:10.0.0.2"),
        ((), "2001:db8:1:2:aaaa::1", None, "addr:2001:db8:1:2::/64"),
        (TRUSTED, "::ffff:127.0.0.1", "192.0.2.1", "addr:192.0.2.1"),
    ],
)
def test_client_addresses(
    trusted: tuple[Any, ...], peer: str, forwarded_for: str | None, subject: str
) -> None:
    headers = [] if forwarded_for is None else [(b"x-forwarded-for", forwarded_for.encode())]
    scope = {"type": "http", "client": (peer, 50000), "headers": headers}
    assert ClientAddresses(trusted).budget_subject(scope) == subject


def test_trusted_proxies_are_checked_when_the_app_is_made(
    settings: OrchestratorSettings,
) -> None:
    assert [str(n) for n in parse_networks(" 10.0.0.0/8 ,127.0.0.1,,")] == [
        "10.0.0.0/8",
        "127.0.0.1/32",
    ]
    with pytest.raises(ValueError, match="SWARM_TRUSTED_PROXIES: 'proxy.local'"):
        create_app(settings.model_copy(update={"trusted_proxies": "10.0.0.0/8,proxy.local"}))
