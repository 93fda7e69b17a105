"""Request budgets (`access/ratelimit.py`, spent by `Guard` in `api/security.py`): checked
before any database work, charged to an address a client cannot pick (`X-Forwarded-For`
believed only from `SWARM_TRUSTED_PROXIES`, also by a real `swarm server`), and valid tokens
behind one address keeping their own budgets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from swarm_orchestrator.access import tokens
from swarm_orchestrator.api.app import create_app
from swarm_orchestrator.api.deps import AppState
from swarm_orchestrator.settings import OrchestratorSettings
from tests.e2e.stack import Stack

BURST = 5
SLOW = {"rate_limit_per_s": 0.001, "rate_limit_burst": BURST}
"""A budget that does not refill while a test runs: BURST requests, then 429."""


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _limited(
    settings: OrchestratorSettings, **update: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, AppState]]:
    app = create_app(settings.model_copy(update={**SLOW, **update}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)  # every request from 127.0.0.1
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client, app.state.swarm


@pytest.fixture
async def limited(
    settings: OrchestratorSettings,
) -> AsyncIterator[tuple[httpx.AsyncClient, AppState]]:
    async for pair in _limited(settings):
        yield pair


@pytest.fixture
async def behind_proxy(
    settings: OrchestratorSettings,
) -> AsyncIterator[tuple[httpx.AsyncClient, AppState]]:
    async for pair in _limited(settings, trusted_proxies="127.0.0.1"):
        yield pair


async def _make_token(api: httpx.AsyncClient, name: str) -> str:
    made = await api.post("/v1/tokens", json={"name": name, "role": "viewer"})
    assert made.status_code == 201, made.text
    token: str = made.json()["token"]
    return token


async def test_bad_tokens_past_the_address_budget_reach_no_database(
    limited: tuple[httpx.AsyncClient, AppState],
) -> None:
    client, state = limited
    first = [
        (await client.get("/v1/whoami", headers=bearer(tokens.new_token()))).status_code
        for _ in range(BURST)
    ]
    assert first == [401] * BURST
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(state.engine.sync_engine, "before_cursor_execute", seen)
    try:
        refused = [
            await client.get("/v1/whoami", headers=bearer(tokens.new_token())) for _ in range(20)
        ]
    finally:
        event.remove(state.engine.sync_engine, "before_cursor_execute", seen)
    assert {r.status_code for r in refused} == {429}
    assert statements == [], "a request over its address's budget reached the database"
    assert {r.json()["code"] for r in refused} == {"rate_limited"}
    assert refused[0].json()["details"]["budget"] == "address"
    assert int(refused[0].headers["retry-after"]) >= 1


async def test_tokens_behind_one_address_keep_their_own_budgets(
    api: httpx.AsyncClient, limited: tuple[httpx.AsyncClient, AppState]
) -> None:
    client, _ = limited
    alice, bob = await _make_token(api, "alice"), await _make_token(api, "bob")
    # Valid tokens do not spend their address's budget: 2 x BURST requests from one address.
    for token in (alice, bob):
        codes = [
            (await client.get("/v1/whoami", headers=bearer(token))).status_code
            for _ in range(BURST)
        ]
        assert codes == [200] * BURST
    over = await client.get("/v1/whoami", headers=bearer(alice))
    assert over.status_code == 429 and over.json()["details"]["budget"] == "token"
    # Refused by its token's budget, it gave the address its request back: the address's
    # whole budget is still there for requests without a valid token.
    wrong = [
        (await client.get("/v1/whoami", headers=bearer("nope"))).status_code
        for _ in range(BURST + 1)
    ]
    assert wrong == [401] * BURST + [429]


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(
    limited: tuple[httpx.AsyncClient, AppState],
) -> None:
    client, _ = limited
    codes = [
        (
            await client.get(
                "/v1/whoami",
                headers={**bearer(tokens.new_token()), "X-Forwarded-For": f"203.0.113.{i}"},
            )
        ).status_code
        for i in range(1, 3 * BURST)
    ]
    assert codes == [401] * BURST + [429] * (2 * BURST - 1)


async def test_a_trusted_proxy_names_the_client(
    behind_proxy: tuple[httpx.AsyncClient, AppState],
) -> None:
    client, _ = behind_proxy

    async def status(forwarded_for: str) -> int:
        headers = {**bearer(tokens.new_token()), "X-Forwarded-For": forwarded_for}
        return (await client.get("/v1/whoami", headers=headers)).status_code

    # Each client behind the proxy has its own budget ...
    assert [await status(f"203.0.113.{i}") for i in range(1, 3 * BURST)] == [401] * (3 * BURST - 1)
    # ... and what a client writes into the header itself (the left entries) is not believed.
    forged = [await status(f"198.51.100.{i}, 192.0.2.7") for i in range(1, 3 * BURST)]
    assert forged == [401] * BURST + [429] * (2 * BURST - 1)


def test_a_real_server_does_not_take_the_client_from_forwarded_for(stack: Stack) -> None:
    """uvicorn believes `X-Forwarded-For` from 127.0.0.1 unless told not to: `swarm server`
    must, so a client cannot take a new budget with every request."""
    stack.start_orchestrator(SWARM_RATE_LIMIT_PER_S="0.001", SWARM_RATE_LIMIT_BURST=str(BURST))
    with httpx.Client(base_url=stack.api_url, timeout=10) as client:
        codes = [
            client.get(
                "/v1/whoami",
                headers={**bearer(tokens.new_token()), "X-Forwarded-For": f"203.0.113.{i}"},
            ).status_code
            for i in range(1, 8 * BURST)
        ]
    assert codes == [401] * BURST + [429] * (7 * BURST - 1)
