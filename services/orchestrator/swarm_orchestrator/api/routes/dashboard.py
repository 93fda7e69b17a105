"""The web dashboard: `GET /` is its page, `GET /ui/<file>` its scripts and styles, shipped
in the package (`swarm_orchestrator/dashboard/static`, plain files, no build step).

Both are public: they hold no data; the page asks for a token once, keeps it in the
browser, and sends it with every API call it makes. A strict Content-Security-Policy lets
the page run only its own scripts, so text from agents cannot become code.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

__all__ = ["STATIC", "install"]

STATIC = Path(__file__).resolve().parents[2] / "dashboard" / "static"

CSP = (
    "default-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "style-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
"""No inline style either: the page sets styles from its scripts (`el.style`) only, so
markup that slipped into the page could not restyle it to lift what it shows."""
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=HEADERS)


class _Assets(StaticFiles):
    """The dashboard's files, with the page's security headers."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await super().__call__(scope, receive, with_headers)


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/ui", _Assets(directory=STATIC, check_dir=False), name="dashboard")
