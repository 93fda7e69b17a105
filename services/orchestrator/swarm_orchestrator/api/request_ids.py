"""Request ids: every API request has one, which its response carries in `X-Request-ID`
and every log line written while it is served carries as `request_id`.

A caller's own `X-Request-ID` (a proxy's, a client's trace id) is kept when it is a short
token of safe characters (`REQUEST_ID_RE`: letters, digits and `. _ : = + / @ -`, at most
128), so the id a caller logged finds the server's lines; anything else is replaced by a
new random id (32 hex digits), never echoed.
"""

from __future__ import annotations

import re
import uuid

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from swarm_common import logs

__all__ = ["HEADER", "REQUEST_ID_RE", "RequestIds", "request_id"]

HEADER = "X-Request-ID"
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:=+/@-]{0,127}")
_HEADER = HEADER.lower().encode()
_STATE = "request_id"


def _given(scope: Scope) -> str | None:
    for name, value in scope.get("headers") or ():
        if name == _HEADER:
            text = bytes(value).decode("latin-1")
            return text if REQUEST_ID_RE.fullmatch(text) else None
    return None


def request_id(request: Request) -> str | None:
    """The id of `request` (None outside this middleware)."""
    found = (request.scope.get("state") or {}).get(_STATE)
    return found if isinstance(found, str) else None


class RequestIds:
    """ASGI middleware: give the request its id, bind it to the log lines, answer with it.
    Outermost, so even a refusal (401, 429, 413) carries it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _given(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})[_STATE] = rid
        header = (_HEADER, rid.encode())

        async def answer(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers") or () if k.lower() != _HEADER]
                message = {**message, "headers": [*kept, header]}
            await send(message)

        with logs.bound(request_id=rid):
            await self.app(scope, receive, answer)
