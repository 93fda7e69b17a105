"""Who may call the API, how often, and what leaves it.

- `Guard` (ASGI middleware) authenticates every request but the probes and the API's own
  documentation. First, before any database work, the request spends one request of its
  client address's budget and of its token's (`swarm_orchestrator.access.ratelimit`; the
  address as `swarm_orchestrator.access.addresses` resolves it); over budget: 429
  `rate_limited` with `Retry-After`. Then the bearer token is resolved to a `Principal` (see
  `swarm_orchestrator.access.tokens`) before anything else of the request is read; no token
  or an unknown one: 401 `unauthorized`. On `/metrics` alone, the metrics token
  (`SWARM_METRICS_TOKEN`) is accepted too, without a database lookup: a Prometheus scraper
  holds that token and can read nothing else.
- The `Viewer`, `Operator`, `Admin` and `SystemAdmin` dependencies authorize: a role below the
  route's is a 403 `forbidden`. They also declare the bearer scheme in the OpenAPI document.
- `RedactResponses` (ASGI middleware) passes every response body through the redaction
  filter, so a secret that reached a prompt, a transcript or a gate's output is not served.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from swarm_orchestrator.access import tokens
from swarm_orchestrator.access.addresses import ClientAddresses
from swarm_orchestrator.access.ratelimit import Budget
from swarm_orchestrator.access.tokens import Forbidden, Principal, Role
from swarm_orchestrator.api.errors import error_response
from swarm_orchestrator.api.routes import docs
from swarm_orchestrator.runtime.failures import is_transient

if TYPE_CHECKING:
    from swarm_orchestrator.api.deps import AppState

__all__ = [
    "METRICS_PATH",
    "METRICS_SCRAPER",
    "PUBLIC_PATHS",
    "is_public",
    "Admin",
    "Guard",
    "Operator",
    "RedactResponses",
    "SystemAdmin",
    "Viewer",
    "skip_redaction",
]

log = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json", *docs.PATHS})
"""Answered without a token: the probes, and the API's description and its page (they hold
no data)."""

METRICS_PATH = "/metrics"
METRICS_SCRAPER = "metrics"
"""The name a request carrying the metrics token acts as (a viewer without a tenant)."""

DASHBOARD_PREFIX = "/ui/"
"""The dashboard's page (`/`) and assets: public, they hold no data (every call the page
makes carries the token its user entered)."""


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path == "/" or path.startswith(DASHBOARD_PREFIX)


MAX_TOKEN_CHARS = 512


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers") or ():
        if name == b"authorization":
            scheme, _, token = bytes(value).decode("latin-1").partition(" ")
            token = token.strip()
            if scheme.lower() == "bearer" and 0 < len(token) <= MAX_TOKEN_CHARS:
                return token
            return None
    return None


class Guard:
    def __init__(self, app: ASGIApp, *, addresses: ClientAddresses | None = None) -> None:
        self.app = app
        self.addresses = addresses or ClientAddresses()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        state = scope["app"].state.swarm
        token = _bearer(scope)
        address = self.addresses.budget_subject(scope)
        bootstrap = state.settings.bootstrap_token()
        budget = await state.limiter.admit(
            address=address,
            token=None if token is None else tokens.budget_subject(token, bootstrap=bootstrap),
        )
        if not budget.allowed:
            await _rate_limited(budget)(scope, receive, send)
            return
        outcome = _scraper(state, scope, token) or await _authenticate(state, token)
        if not isinstance(outcome, Principal):
            await outcome(scope, receive, send)
            return
        await state.limiter.credit(address)
        scope.setdefault("state", {})["principal"] = outcome
        await self.app(scope, receive, send)


def _rate_limited(budget: Budget) -> Response:
    whose = "this token" if budget.refused_by == "token" else "this address"
    return error_response(
        429,
        "rate_limited",
        f"too many requests from {whose}; slow down",
        {"retry_after_s": budget.retry_after_s, "budget": budget.refused_by},
        headers={"Retry-After": str(budget.retry_after_s)},
    )


def _scraper(state: AppState, scope: Scope, token: str | None) -> Principal | None:
    """The metrics scraper, for the metrics token on `/metrics` (and nowhere else)."""
    expected = state.settings.metrics_token_value()
    if token is None or not expected or scope["path"] != METRICS_PATH:
        return None
    if hmac.compare_digest(token.encode(), expected.encode()):
        return Principal(name=METRICS_SCRAPER, role=Role.VIEWER)
    return None


async def _authenticate(state: AppState, token: str | None) -> Principal | Response:
    """The principal of the request's token, or the error response that ends it."""
    if token is None:
        return _unauthorized("a bearer token is required (Authorization: Bearer <token>)")
    try:
        async with state.sessionmaker() as db:
            principal = await tokens.resolve(db, token, bootstrap=state.settings.bootstrap_token())
    except Exception as exc:
        if not is_transient(exc):
            raise
        log.warning("token not checked: database unavailable", extra={"error": repr(exc)})
        return error_response(
            503,
            "unavailable",
            "the database is unavailable; try again",
            headers={"Retry-After": "2"},
        )
    if principal is None:
        return _unauthorized("the bearer token is unknown, revoked or expired")
    return principal


def _unauthorized(message: str) -> Response:
    return error_response(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


_bearer_scheme = HTTPBearer(
    auto_error=False,
    description="A token from `swarm token create` (or the server's `SWARM_API_TOKEN`).",
)


def _require(role: Role, *, global_only: bool = False) -> Callable[..., Principal]:
    def dependency(
        request: Request,
        _: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer_scheme)],
    ) -> Principal:
        principal: Principal | None = getattr(request.state, "principal", None)
        if principal is None:  # only a route outside the guard gets here
            raise Forbidden("no principal for this request")
        if not principal.role.allows(role):
            raise Forbidden(
                f"this needs the {role.value} role; token {principal.name!r} is a "
                f"{principal.role.value}",
                details={"needed": role.value, "role": principal.role.value},
            )
        if global_only and principal.tenant is not None:
            raise Forbidden(
                "this acts on the whole system and needs an admin token without a tenant",
                code="system_admin_required",
                details={"tenant": principal.tenant},
            )
        return principal

    return dependency


Viewer = Annotated[Principal, Depends(_require(Role.VIEWER))]
"""Reads: any valid token."""
Operator = Annotated[Principal, Depends(_require(Role.OPERATOR))]
"""Submits and controls sessions and tasks."""
Admin = Annotated[Principal, Depends(_require(Role.ADMIN))]
"""Manages tokens (of its own tenant, when it has one)."""
SystemAdmin = Annotated[Principal, Depends(_require(Role.ADMIN, global_only=True))]
"""Acts on the whole system (drain, stop): an admin without a tenant."""


def skip_redaction(request: Request) -> None:
    """This response carries a secret on purpose (a token shown once, at creation)."""
    request.state.skip_redaction = True


_REDACTED_TYPES = (b"application/json", b"text/")


class RedactResponses:
    """Redact every JSON and text response body; a streamed body chunk by chunk."""

    def __init__(self, app: ASGIApp, *, redact: Callable[[str], str]) -> None:
        self.app = app
        self.redact = redact

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        redacting = False

        async def wrapped(message: Message) -> None:
            nonlocal start, redacting
            if message["type"] == "http.response.start":
                kind = dict(message.get("headers") or []).get(b"content-type", b"")
                skip = (scope.get("state") or {}).get("skip_redaction", False)
                redacting = not skip and kind.startswith(_REDACTED_TYPES)
                if not redacting:
                    await send(message)
                else:
                    start = message
                return
            if message["type"] != "http.response.body" or not redacting:
                await send(message)
                return
            body = message.get("body", b"")
            cleaned = self.redact(body.decode("utf-8", errors="surrogateescape")).encode(
                "utf-8", errors="surrogateescape"
            )
            if start is not None:
                headers: list[tuple[bytes, bytes]] = [
                    (k, v) for k, v in start.get("headers") or [] if k.lower() != b"content-length"
                ]
                if not message.get("more_body", False):
                    headers.append((b"content-length", str(len(cleaned)).encode()))
                await send({**start, "headers": headers})
                start = None
            out: dict[str, Any] = {**message, "body": cleaned}
            await send(out)

        await self.app(scope, receive, wrapped)
