"""`GET /docs`: the API's interactive page (Swagger UI) from files shipped in a Python
package, never from a CDN, under a strict Content-Security-Policy.

The page shares its origin with the dashboard, which keeps its token in the browser's
localStorage, so no script but these files may run there: none inline (Swagger UI is started
by `/docs/swagger-init.js`), none from another origin, and `connect-src 'self'` keeps the
page from fetching a foreign API description. `/redoc` and FastAPI's OAuth2 redirect page
(an inline script) are not served; `/openapi.json` is.

The files come from `fastapi-offline`: it ships Swagger UI's built files, follows Swagger UI
5's releases and needs nothing but FastAPI. Only its files are used, not its app factory,
whose page starts Swagger UI with an inline script.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, HTMLResponse, Response

__all__ = ["CSP", "PATHS", "install"]

SWAGGER_UI = Path(fastapi_offline.__file__).resolve().parent / "static"

PAGE = "/docs"
BUNDLE = "/docs/swagger-ui-bundle.js"
STYLE = "/docs/swagger-ui.css"
INIT = "/docs/swagger-init.js"
PATHS = frozenset({PAGE, BUNDLE, STYLE, INIT})
"""Public, like the API description they show."""

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

_HTML = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Swarm API</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="{STYLE}">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{BUNDLE}"></script>
  <script src="{INIT}"></script>
</body>
</html>
"""

_INIT_JS = """// Swagger UI on /docs, started from a file: the page's CSP runs no inline script.
window.ui = SwaggerUIBundle({
  url: '/openapi.json',
  dom_id: '#swagger-ui',
  layout: 'BaseLayout',
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  validatorUrl: null,
  queryConfigEnabled: false,
  persistAuthorization: false,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
"""

router = APIRouter(include_in_schema=False)


@router.get(PAGE)
async def page() -> HTMLResponse:
    return HTMLResponse(_HTML, headers=HEADERS)


@router.get(INIT)
async def init() -> Response:
    return Response(_INIT_JS, media_type="text/javascript", headers=HEADERS)


@router.get(BUNDLE)
async def bundle() -> FileResponse:
    return FileResponse(
        SWAGGER_UI / "swagger-ui-bundle.js", media_type="text/javascript", headers=HEADERS
    )


@router.get(STYLE)
async def style() -> FileResponse:
    return FileResponse(SWAGGER_UI / "swagger-ui.css", media_type="text/css", headers=HEADERS)


def install(app: FastAPI) -> None:
    """Serve the page; the app must be made with `docs_url=None, redoc_url=None`."""
    app.include_router(router)
