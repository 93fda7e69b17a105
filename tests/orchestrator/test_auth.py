"""Authentication and authorization: every endpoint × {no token, bad token, viewer, operator,
admin, other tenant}; tokens stored hashed, revocable, expiring; tenants; rate limits; audit
entries with the token's name; secrets kept out of responses."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text, update

from swarm_common.messages import utcnow
from swarm_orchestrator.access import tokens
from swarm_orchestrator.api.app import create_app
from swarm_orchestrator.api.deps import AppState
from swarm_orchestrator.db.models import ApiToken
from swarm_orchestrator.settings import OrchestratorSettings
from tests.e2e.stack import TEST_TOKEN
from tests.orchestrator.helpers import new_session, task

pytestmark = pytest.mark.usefixtures("state")

ROLES = ("viewer", "operator", "admin")
CALLERS = ("none", "bad", "viewer", "operator", "admin", "other_tenant")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def make_token(
    api: httpx.AsyncClient, name: str, role: str, tenant: str | None = None, **extra: Any
) -> dict[str, Any]:
    body = {"name": name, "role": role, "tenant": tenant, **extra}
    response = await api.post("/v1/tokens", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


@dataclass
class World:
    """Tokens of every role, and a session and task of tenant `acme` to act on."""

    api: httpx.AsyncClient
    repo: Path
    tokens: dict[str, str]
    session_id: str
    task_id: str
    counter: int = 0

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter}"

    def client(self, token: str) -> httpx.AsyncClient:
        """A client of the same app that sends `token`."""
        return httpx.AsyncClient(
            transport=self.api._transport, base_url=str(self.api.base_url), headers=bearer(token)
        )

    async def acme_session(self, **extra: Any) -> dict[str, Any]:
        """A new session of tenant `acme` with one queued task."""
        async with self.client(self.tokens["acme_operator"]) as api:
            return await new_session(api, self.repo, [task(self.fresh("t"))], **extra)

    async def acme_task(self) -> str:
        session = await self.acme_session()
        async with self.client(self.tokens["acme_operator"]) as api:
            tasks = (await api.get(f"/v1/sessions/{session['id']}/tasks")).json()
        return str(tasks[0]["id"])


@pytest.fixture
async def world(api: httpx.AsyncClient, git_repo: Path) -> World:
    tokens = {role: (await make_token(api, role, role))["token"] for role in ROLES}
    tokens["other_tenant"] = (await make_token(api, "globex-admin", "admin", "globex"))["token"]
    tokens["acme_operator"] = (await make_token(api, "acme-op", "operator", "acme"))["token"]
    w = World(api=api, repo=git_repo, tokens=tokens, session_id="", task_id="")
    session = await w.acme_session(idempotency_key="acme-main")
    w.session_id = session["id"]
    async with w.client(tokens["admin"]) as admin:
        w.task_id = (await admin.get(f"/v1/sessions/{w.session_id}/tasks")).json()[0]["id"]
        # A checkpoint to read back.
        assert (await admin.post(f"/v1/sessions/{w.session_id}/checkpoints")).status_code == 202
    return w


Request = tuple[str, Any]
"""A concrete path and a JSON body (or None)."""


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    role: str
    """The lowest role allowed."""
    scope: str
    """`session`: acts on tenant acme's session or task (another tenant gets 404);
    `global`: not tenant data; `system`: needs an admin without a tenant; `tokens`: token
    management (a tenant's admin manages its own tenant's); `tenant`: about tenant acme
    itself (another tenant is refused); `untenanted`: spans every tenant, so any token
    without a tenant may read it and a tenant's token is refused."""
    ok: int
    """The status an allowed caller gets."""
    build: Callable[[World], Awaitable[Request]]
    ok_code: str | None = None
    """The error code an allowed caller gets, for an `ok` that is an error."""


async def _fixed(path: str, body: Any = None) -> Request:
    return path, body


def _ep(
    method: str,
    path: str,
    role: str,
    scope: str,
    ok: int,
    build: Any = None,
    ok_code: str | None = None,
) -> Endpoint:
    async def default(w: World) -> Request:
        return await _fixed(
            path.replace("{session_id}", w.session_id)
            .replace("{task_id}", w.task_id)
            .replace("{number}", "1")
        )

    return Endpoint(method, path, role, scope, ok, build or default, ok_code)


async def _create_session(w: World) -> Request:
    return "/v1/sessions", {"title": "x", "repo": str(w.repo), "base_ref": "main"}


async def _add_tasks(w: World) -> Request:
    return f"/v1/sessions/{w.session_id}/tasks", [task(w.fresh("added"))]


async def _cancel_session(w: World) -> Request:
    return f"/v1/sessions/{(await w.acme_session())['id']}/cancel", None


async def _checkpoint(w: World) -> Request:
    return f"/v1/sessions/{(await w.acme_session())['id']}/checkpoints", None


def _plan_change(method: str, path: str) -> Callable[[World], Awaitable[Request]]:
    bodies: dict[str, Any] = {
        "PATCH": {"base_revision": 0, "tasks": [task("x")]},
        "POST/plan/messages": {"text": "more tests"},
    }

    async def build(w: World) -> Request:
        key = "PATCH" if method == "PATCH" else f"POST{path.split('{session_id}')[1]}"
        return path.replace("{session_id}", w.session_id), bodies.get(key)

    return build


async def _cancel_task(w: World) -> Request:
    return f"/v1/tasks/{await w.acme_task()}/cancel", None


async def _create_token(w: World) -> Request:
    return "/v1/tokens", {"name": w.fresh("made"), "role": "viewer"}


async def _revoke_token(w: World) -> Request:
    made = await make_token(w.api, w.fresh("victim"), "viewer", "acme")
    return f"/v1/tokens/{made['id']}", None


async def _inventory(w: World) -> Request:
    return "/v1/inventory", {"roots": [str(w.repo)], "max_depth": 0}


async def _store_personas(w: World) -> Request:
    return "/v1/personas", [{"name": w.fresh("persona"), "role": "qa"}]


async def _generate_personas(w: World) -> Request:
    return "/v1/personas/generate", {"count": 2, "seed": 1}


async def _a_persona(w: World) -> Request:
    """A fresh persona in the shared catalogue and in globex's, so each caller finds one."""
    name = w.fresh("persona")
    for token in (None, w.tokens["other_tenant"]):
        headers = bearer(token) if token else {}
        made = await w.api.post(
            "/v1/personas", json=[{"name": name, "role": "qa"}], headers=headers
        )
        assert made.status_code == 201, made.text
    return f"/v1/personas/{name}", None


async def _a_fact(w: World) -> Request:
    return f"/v1/sessions/{w.session_id}/blackboard", {"key": w.fresh("fact"), "value": 1}


async def _a_template(w: World) -> Request:
    return "/v1/templates/expand", {"name": "pipeline", "phases": [{"name": "a", "prompt": "b"}]}


async def _a_comment(w: World) -> Request:
    return f"/v1/tasks/{w.task_id}/comments", {"body": "looks good"}


async def _usage_of_session(w: World) -> Request:
    return f"/v1/usage?group_by=agent&session_id={w.session_id}", None


async def _a_session_budget(w: World) -> Request:
    return f"/v1/sessions/{w.session_id}/budget", {"usd": 1000, "on_exhausted": "finish"}


async def _acme_budget(w: World) -> Request:
    return "/v1/tenants/acme/budget", None


async def _an_acme_budget(w: World) -> Request:
    return "/v1/tenants/acme/budget", {"usd": 1000, "tokens": 10**9}


async def _fact(w: World) -> Request:
    return f"/v1/sessions/{w.session_id}/blackboard/some.key", None


WEBHOOK_URL = "https://hooks.example.com/swarm"


async def _a_webhook(w: World) -> Request:
    return "/v1/webhooks", {"url": WEBHOOK_URL, "session_id": w.session_id}


def _acme_webhook(suffix: str = "") -> Callable[[World], Awaitable[Request]]:
    """A fresh webhook of tenant acme (so each caller has one to remove)."""

    async def build(w: World) -> Request:
        async with w.client(w.tokens["acme_operator"]) as api:
            made = await api.post("/v1/webhooks", json={"url": WEBHOOK_URL})
        assert made.status_code == 201, made.text
        return f"/v1/webhooks/{made.json()['id']}{suffix}", None

    return build


def _proposal(decision: str) -> Callable[[World], Awaitable[Request]]:
    async def build(w: World) -> Request:
        body = {"reason": "not now"} if decision == "refuse" else None
        return f"/v1/sessions/{w.session_id}/proposals/1/{decision}", body

    return build


ENDPOINTS = [
    _ep("GET", "/v1/sessions", "viewer", "global", 200),
    _ep("POST", "/v1/sessions", "operator", "global", 201, _create_session),
    _ep("GET", "/v1/sessions/{session_id}", "viewer", "session", 200),
    _ep("POST", "/v1/sessions/{session_id}/tasks", "operator", "session", 201, _add_tasks),
    _ep("GET", "/v1/sessions/{session_id}/tasks", "viewer", "session", 200),
    # Its task is queued: an allowed caller learns the session has not settled.
    _ep(
        "POST",
        "/v1/sessions/{session_id}/finish",
        "operator",
        "session",
        409,
        ok_code="session_not_settled",
    ),
    _ep("POST", "/v1/sessions/{session_id}/archive", "operator", "session", 200),
    _ep("POST", "/v1/sessions/{session_id}/unarchive", "operator", "session", 200),
    _ep("GET", "/v1/sessions/{session_id}/graph", "viewer", "session", 200),
    _ep("GET", "/v1/sessions/{session_id}/plan", "viewer", "session", 200),
    # The session runs (it is no draft): an allowed caller learns its plan is not edited.
    *(
        _ep(
            method,
            path,
            "operator",
            "session",
            409,
            _plan_change(method, path),
            ok_code="session_not_draft",
        )
        for method, path in (
            ("POST", "/v1/sessions/{session_id}/plan"),
            ("PATCH", "/v1/sessions/{session_id}/plan"),
            ("POST", "/v1/sessions/{session_id}/plan/messages"),
            ("POST", "/v1/sessions/{session_id}/approve"),
        )
    ),  # fmt: skip
    _ep("POST", "/v1/sessions/{session_id}/cancel", "operator", "session", 200, _cancel_session),
    _ep("GET", "/v1/sessions/{session_id}/events", "viewer", "session", 200),
    _ep("GET", "/v1/sessions/{session_id}/progress", "viewer", "session", 200),
    _ep("POST", "/v1/sessions/{session_id}/pause", "operator", "session", 200),
    _ep("POST", "/v1/sessions/{session_id}/resume", "operator", "session", 200),
    _ep("POST", "/v1/sessions/{session_id}/checkpoints", "operator", "session", 202, _checkpoint),
    _ep("GET", "/v1/sessions/{session_id}/checkpoints", "viewer", "session", 200),
    _ep("GET", "/v1/sessions/{session_id}/budget", "viewer", "session", 200),
    _ep("PUT", "/v1/sessions/{session_id}/budget", "operator", "session", 200, _a_session_budget),
    _ep("GET", "/v1/tenants/{tenant}/budget", "viewer", "tenant", 200, _acme_budget),
    _ep("PUT", "/v1/tenants/{tenant}/budget", "admin", "system", 200, _an_acme_budget),
    _ep("GET", "/v1/sessions/{session_id}/checkpoints/{number}", "viewer", "session", 200),
    _ep("GET", "/v1/sessions/{session_id}/dry-run", "viewer", "session", 200),
    # No checkpoint has passed: an allowed caller learns there is none to roll back to.
    _ep(
        "POST",
        "/v1/sessions/{session_id}/rollback",
        "operator",
        "session",
        404,
        ok_code="checkpoint_not_found",
    ),
    _ep("GET", "/v1/tasks/{task_id}", "viewer", "session", 200),
    _ep("GET", "/v1/tasks/{task_id}/events", "viewer", "session", 200),
    # A queued task is not retryable: an allowed retry is a conflict.
    _ep(
        "POST",
        "/v1/tasks/{task_id}/retry",
        "operator",
        "session",
        409,
        ok_code="task_not_retryable",
    ),
    _ep("POST", "/v1/tasks/{task_id}/cancel", "operator", "session", 200, _cancel_task),
    # The task does not ask for approval: an allowed caller learns it is not awaiting one.
    _ep(
        "POST",
        "/v1/tasks/{task_id}/approve",
        "operator",
        "session",
        409,
        ok_code="not_awaiting_approval",
    ),
    _ep("GET", "/v1/tasks/{task_id}/comments", "viewer", "session", 200),
    _ep("POST", "/v1/tasks/{task_id}/comments", "operator", "session", 201, _a_comment),
    # Nothing is committed yet: an allowed caller learns there is no diff.
    _ep("GET", "/v1/tasks/{task_id}/diff", "viewer", "session", 404, ok_code="no_diff"),
    _ep("GET", "/v1/workers", "viewer", "global", 200),
    _ep("GET", "/v1/system", "viewer", "global", 200),
    _ep("POST", "/v1/system/drain", "admin", "system", 200),
    _ep("POST", "/v1/system/stop", "admin", "system", 200),
    _ep("POST", "/v1/system/resume", "admin", "system", 200),
    _ep("GET", "/v1/whoami", "viewer", "global", 200),
    _ep("POST", "/v1/inventory", "operator", "global", 200, _inventory),
    _ep("GET", "/v1/inventory", "viewer", "global", 200),
    _ep("GET", "/v1/templates", "viewer", "global", 200),
    _ep("POST", "/v1/templates/expand", "viewer", "global", 200, _a_template),
    _ep("GET", "/v1/personas", "viewer", "global", 200),
    _ep("POST", "/v1/personas", "operator", "global", 201, _store_personas),
    _ep("POST", "/v1/personas/generate", "operator", "global", 201, _generate_personas),
    _ep("GET", "/v1/usage", "viewer", "session", 200, _usage_of_session),
    _ep("GET", "/v1/prices", "viewer", "global", 200),
    _ep("GET", "/metrics", "viewer", "untenanted", 200),
    _ep("GET", "/v1/personas/{name}", "viewer", "global", 200, _a_persona),
    _ep("DELETE", "/v1/personas/{name}", "operator", "global", 200, _a_persona),
    _ep("GET", "/v1/sessions/{session_id}/blackboard", "viewer", "session", 200),
    _ep("POST", "/v1/sessions/{session_id}/blackboard", "operator", "session", 201, _a_fact),
    _ep("GET", "/v1/sessions/{session_id}/blackboard/{key}", "viewer", "session", 200, _fact),
    _ep("GET", "/v1/sessions/{session_id}/proposals", "viewer", "session", 200),
    # No handoff proposed anything: an allowed caller learns there is no such proposal.
    *(
        _ep(
            "POST",
            f"/v1/sessions/{{session_id}}/proposals/{{proposal_id}}/{decision}",
            "operator",
            "session",
            404,
            _proposal(decision),
            ok_code="proposal_not_found",
        )
        for decision in ("accept", "refuse")
    ),
    _ep("POST", "/v1/tokens", "admin", "tokens", 201, _create_token),
    _ep("GET", "/v1/tokens", "admin", "tokens", 200),
    _ep("DELETE", "/v1/tokens/{token_id}", "admin", "tokens", 200, _revoke_token),
    _ep("POST", "/v1/webhooks", "operator", "session", 201, _a_webhook),
    _ep("GET", "/v1/webhooks", "viewer", "global", 200),
    _ep("GET", "/v1/webhooks/{webhook_id}", "viewer", "session", 200, _acme_webhook()),
    _ep("DELETE", "/v1/webhooks/{webhook_id}", "operator", "session", 200, _acme_webhook()),
    _ep(
        "GET",
        "/v1/webhooks/{webhook_id}/deliveries",
        "viewer",
        "session",
        200,
        _acme_webhook("/deliveries"),
    ),
    _ep(
        "POST", "/v1/webhooks/{webhook_id}/test", "operator", "session", 202, _acme_webhook("/test")
    ),
]

RANK = {"viewer": 1, "operator": 2, "admin": 3}


def expected(endpoint: Endpoint, caller: str) -> tuple[int, str | None]:
    """The status and error code `caller` gets (another tenant's things are not found, so
    their existence is not told either)."""
    allowed = (endpoint.ok, endpoint.ok_code)
    if caller in ("none", "bad"):
        return 401, "unauthorized"
    if caller == "other_tenant":  # an admin of tenant globex
        if endpoint.scope == "session":
            what = "task" if "{task_id}" in endpoint.path else "session"
            what = "webhook" if "{webhook_id}" in endpoint.path else what
            return 404, f"{what}_not_found"
        if endpoint.scope == "system":
            return 403, "system_admin_required"
        if endpoint.scope == "tenant":
            return 403, "forbidden"
        if endpoint.scope == "untenanted":
            return 403, "global_token_required"
        if endpoint.path == "/v1/tokens/{token_id}":  # acme's token: not globex's to see
            return 404, "token_not_found"
        return allowed
    return allowed if RANK[caller] >= RANK[endpoint.role] else (403, "forbidden")


def test_every_route_is_in_the_matrix(settings: OrchestratorSettings) -> None:
    app = create_app(settings)
    routes = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    public = {("GET", "/healthz"), ("GET", "/readyz")}
    assert routes - public == {(e.method, e.path) for e in ENDPOINTS}


@pytest.mark.parametrize("caller", CALLERS)
async def test_the_endpoint_matrix(world: World, caller: str) -> None:
    headers = {
        "none": {},
        "bad": bearer("swarm_" + "x" * 43),
        **{name: bearer(token) for name, token in world.tokens.items()},
    }[caller]
    seen = {}
    for endpoint in ENDPOINTS:
        path, body = await endpoint.build(world)
        response = await world.api.request(
            endpoint.method,
            path,
            json=body,
            headers={"Authorization": ""} | headers,
        )
        assert response.status_code < 500
        code = response.json().get("code") if response.status_code >= 400 else None
        seen[f"{endpoint.method} {endpoint.path}"] = (
            (response.status_code, code),
            expected(endpoint, caller),
            response.text[:200],
        )
    wrong = {k: v for k, v in seen.items() if v[0] != v[1]}
    assert not wrong, wrong
    await world.api.post("/v1/system/resume")


async def test_another_tenant_sees_none_of_acme(world: World) -> None:
    globex = bearer(world.tokens["other_tenant"])
    listed = (await world.api.get("/v1/sessions", headers=globex)).json()
    assert listed == []
    assert (await world.api.get("/v1/system", headers=globex)).json()["queued"] == 0
    assert (await world.api.get("/v1/system")).json()["queued"] >= 1  # acme's queued task
    everyone = (await world.api.get("/v1/sessions", headers=bearer(world.tokens["viewer"]))).json()
    assert world.session_id in {s["id"] for s in everyone}
    # The same idempotency key in another tenant makes that tenant's own session.
    again = await world.api.post(
        "/v1/sessions",
        json={"title": "g", "repo": str(world.repo), "idempotency_key": "acme-main"},
        headers=globex,
    )
    assert again.status_code == 201 and again.json()["id"] != world.session_id
    mine = (await world.api.get("/v1/sessions", headers=globex)).json()
    assert [s["id"] for s in mine] == [again.json()["id"]]
    # A tenant's admin makes tokens of its own tenant only.
    made = await world.api.post("/v1/tokens", json={"name": "g2", "role": "viewer"}, headers=globex)
    assert made.json()["tenant"] == "globex"
    other = await world.api.post(
        "/v1/tokens", json={"name": "g3", "role": "viewer", "tenant": "acme"}, headers=globex
    )
    assert (other.status_code, other.json()["code"]) == (403, "forbidden")
    names = {t["name"] for t in (await world.api.get("/v1/tokens", headers=globex)).json()}
    assert names == {"globex-admin", "g2"}


async def test_tokens_are_stored_hashed_and_shown_once(
    api: httpx.AsyncClient, state: AppState
) -> None:
    made = await make_token(api, "ci-bot", "operator")
    token = made["token"]
    assert token.startswith("swarm_") and len(token) == 49
    async with state.sessionmaker() as db:
        row = await db.get(ApiToken, uuid.UUID(made["id"]))
        assert row is not None
        assert row.digest == hashlib.sha256(token.encode()).hexdigest()
        dump = (await db.execute(text("SELECT row_to_json(t)::text FROM api_tokens t"))).scalars()
        assert not any(token in line for line in dump)
    listed = (await api.get("/v1/tokens")).json()
    assert "token" not in listed[0] and made["prefix"] == token[:10]
    who = await api.get("/v1/whoami", headers=bearer(token))
    assert who.json() == {"name": "ci-bot", "role": "operator", "tenant": None}
    # A name is unique among active tokens.
    again = await api.post("/v1/tokens", json={"name": "ci-bot", "role": "viewer"})
    assert (again.status_code, again.json()["code"]) == (409, "token_name_taken")


async def test_a_revoked_or_expired_token_is_refused(
    api: httpx.AsyncClient, state: AppState
) -> None:
    made = await make_token(api, "short-lived", "viewer")
    assert (await api.get("/v1/sessions", headers=bearer(made["token"]))).status_code == 200
    revoked = await api.delete(f"/v1/tokens/{made['id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked_by"] == "token:bootstrap"
    refused = await api.get("/v1/sessions", headers=bearer(made["token"]))
    assert (refused.status_code, refused.json()["code"]) == (401, "unauthorized")
    assert (await api.delete(f"/v1/tokens/{made['id']}")).status_code == 200  # twice: no change
    # The name is free again once the token is revoked.
    expiring = await make_token(api, "short-lived", "viewer", expires_in_days=1)
    assert (await api.get("/v1/whoami", headers=bearer(expiring["token"]))).status_code == 200
    async with state.sessionmaker() as db:
        await db.execute(
            update(ApiToken)
            .where(ApiToken.id == uuid.UUID(expiring["id"]))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await db.commit()
    assert (await api.get("/v1/whoami", headers=bearer(expiring["token"]))).status_code == 401


async def test_bad_token_requests(api: httpx.AsyncClient) -> None:
    for header in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer " + "x" * 10_000, "bearer  "]:
        response = await api.get("/v1/sessions", headers={"Authorization": header})
        assert response.status_code == 401, header
    # Refused before the body is read: a huge body without a token is a 401, not a 413.
    big = await api.post(
        "/v1/sessions", content=b"{" * (20 * 1024 * 1024), headers={"Authorization": ""}
    )
    assert big.status_code == 401
    # The probes and the API description need no token.
    for path in ("/healthz", "/readyz", "/openapi.json"):
        assert (await api.get(path, headers={"Authorization": ""})).status_code == 200


async def test_control_actions_are_audited_with_the_token_name(
    api: httpx.AsyncClient, git_repo: Path
) -> None:
    alice = bearer((await make_token(api, "alice", "operator"))["token"])
    session = await new_session(api, git_repo, [task("a"), task("b", "a")])
    tasks = {
        t["key"]: t["id"] for t in (await api.get(f"/v1/sessions/{session['id']}/tasks")).json()
    }
    assert (await api.post(f"/v1/tasks/{tasks['a']}/cancel", headers=alice)).status_code == 200
    assert (await api.post(f"/v1/tasks/{tasks['a']}/retry", headers=alice)).status_code == 200
    assert (
        await api.post(f"/v1/sessions/{session['id']}/cancel", headers=alice)
    ).status_code == 200
    assert (await api.post("/v1/system/drain")).status_code == 200
    assert (await api.post("/v1/system/resume")).status_code == 200
    events = (await api.get(f"/v1/sessions/{session['id']}/events")).json()
    by_type: dict[str, set[str]] = {}
    for e in events:
        by_type.setdefault(e["type"], set()).add(e["actor"])
    assert by_type["session.created"] == {"token:bootstrap"}
    assert "token:alice" in by_type["task.cancelled"]
    assert by_type["task.retried"] == {"token:alice"}
    assert "token:alice" in by_type["session.cancelled"]
    assert (await api.get("/v1/system")).json()["changed_by"] == "token:bootstrap"


async def test_requests_over_a_tokens_budget_get_429(
    settings: OrchestratorSettings, api: httpx.AsyncClient
) -> None:
    viewer = (await make_token(api, "busy", "viewer"))["token"]
    limited = create_app(
        settings.model_copy(update={"rate_limit_per_s": 0.5, "rate_limit_burst": 3})
    )
    async with limited.router.lifespan_context(limited):
        transport = httpx.ASGITransport(app=limited)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            codes = [
                (await client.get("/v1/whoami", headers=bearer(viewer))).status_code
                for _ in range(4)
            ]
            assert codes == [200, 200, 200, 429]
            last = await client.get("/v1/whoami", headers=bearer(viewer))
            assert last.json()["code"] == "rate_limited"
            assert 1 <= int(last.headers["retry-after"]) <= 2
            # Another token has its own budget; the probes have none.
            assert (await client.get("/v1/whoami", headers=bearer(TEST_TOKEN))).status_code == 200
            probes = [(await client.get("/healthz")).status_code for _ in range(10)]
            assert probes == [200] * 10
            # Requests without a valid token spend their address's budget.
            wrong = [
                (await client.get("/v1/whoami", headers=bearer("nope"))).status_code
                for _ in range(4)
            ]
            assert wrong == [401, 401, 401, 429]


async def test_configured_secrets_never_leave_in_a_response(
    api: httpx.AsyncClient, git_repo: Path
) -> None:
    session = await new_session(api, git_repo, [task("a", prompt=f"echo {TEST_TOKEN}")])
    tasks = (await api.get(f"/v1/sessions/{session['id']}/tasks")).json()
    detail = await api.get(f"/v1/tasks/{tasks[0]['id']}")
    assert detail.status_code == 200
    assert TEST_TOKEN not in detail.text and "[REDACTED]" in detail.json()["prompt"]
    assert int(detail.headers["content-length"]) == len(detail.content)


async def test_a_prompt_holding_a_credential_is_refused(
    api: httpx.AsyncClient, git_repo: Path
) -> None:
    key = "sk-ant-api03-" + "A1b2" * 10
    response = await api.post(
        "/v1/sessions",
        json={"title": "t", "repo": str(git_repo), "tasks": [task("a", prompt=f"use {key}")]},
    )
    assert (response.status_code, response.json()["code"]) == (422, "validation_error")
    assert key not in response.text
    assert "credential" in response.text


async def test_the_token_table_has_no_plain_tokens_column(state: AppState) -> None:
    async with state.sessionmaker() as db:
        columns = (
            await db.execute(
                select(text("column_name"))
                .select_from(text("information_schema.columns"))
                .where(text("table_name = 'api_tokens'"))
            )
        ).scalars()
        assert "token" not in set(columns)


async def test_the_local_admin_token_is_kept_while_valid_and_replaced_when_not(
    api: httpx.AsyncClient, state: AppState
) -> None:
    async with state.sessionmaker() as db:
        first = await tokens.ensure_local_admin(db, "", created_by="swarm up")
    assert first is not None
    async with state.sessionmaker() as db:  # a restart keeps it
        assert await tokens.ensure_local_admin(db, first, created_by="swarm up") is None
    assert (await api.get("/v1/whoami", headers=bearer(first))).json()["name"] == "local-admin"
    async with state.sessionmaker() as db:  # the file was lost: a new one, the old revoked
        second = await tokens.ensure_local_admin(db, "not-a-token", created_by="swarm up")
    assert second is not None and second != first
    assert (await api.get("/v1/whoami", headers=bearer(first))).status_code == 401
    listed = (await api.get("/v1/tokens", params={"revoked": "true"})).json()
    assert sorted((t["name"], t["revoked_by"] or "-") for t in listed) == [
        ("local-admin", "-"),
        ("local-admin", "swarm up"),
    ]
    revoked = next(t for t in listed if t["revoked_by"] is None)
    await api.delete(f"/v1/tokens/{revoked['id']}")  # revoked by hand: replaced on start
    async with state.sessionmaker() as db:
        assert await tokens.ensure_local_admin(db, second, created_by="swarm up") is not None
