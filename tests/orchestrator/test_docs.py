"""The API's documentation page (`api/routes/docs.py`): Swagger UI from packaged files, no
other origin and no inline script, under a strict Content-Security-Policy, on the origin
where the dashboard keeps its token; no ReDoc; and the dashboard's own policy."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx
import pytest
from playwright.sync_api import expect

from swarm_orchestrator.api.app import create_app
from swarm_orchestrator.settings import OrchestratorSettings
from tests.e2e.browser import chromium, page_errors
from tests.e2e.stack import Stack

DOCS_CSP = {
    "default-src": "'none'",
    "script-src": "'self'",
    "style-src": "'self'",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "frame-ancestors": "'none'",
}


def policy(response: httpx.Response) -> dict[str, str]:
    header = response.headers.get("content-security-policy", "")
    found = {}
    for directive in filter(None, (d.strip() for d in header.split(";"))):
        name, _, value = directive.partition(" ")
        found[name] = value
    return found


class _Loads(HTMLParser):
    """What a page loads (`src`, `href` of stylesheets) and its inline scripts and styles."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline: list[str] = []
        self._tag = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self._tag = tag
        if tag == "script" and values.get("src"):
            self.urls.append(values["src"] or "")
            self._tag = ""
        if tag == "link" and values.get("rel") == "stylesheet":
            self.urls.append(values.get("href") or "")
        if "style" in values or any(name.startswith("on") for name in values):
            self.inline.append(f"<{tag}> attribute")

    def handle_data(self, data: str) -> None:
        if self._tag in ("script", "style") and data.strip():
            self.inline.append(f"<{self._tag}> {data.strip()[:40]}")


async def test_docs_load_only_packaged_files_under_a_strict_policy(
    settings: OrchestratorSettings,
) -> None:
    app = create_app(settings)  # public: no token, no database, no lifespan
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        page = await client.get("/docs")
        assert page.status_code == 200
        assert DOCS_CSP.items() <= policy(page).items(), page.headers
        assert page.headers["x-content-type-options"] == "nosniff"
        loads = _Loads()
        loads.feed(page.text)
        assert loads.inline == [], "inline code would need 'unsafe-inline'"
        assert loads.urls and all(re.fullmatch(r"/docs/[\w.-]+", u) for u in loads.urls), loads.urls
        for url in loads.urls:
            asset = await client.get(url)
            assert asset.status_code == 200, url
            assert asset.headers["content-type"].split(";")[0] in ("text/javascript", "text/css")
            assert policy(asset) == policy(page)
            assert asset.headers["x-content-type-options"] == "nosniff"
            assert not re.search(r"https?://(cdn|unpkg|fonts)\.", asset.text[:4096]), url
        started = (await client.get("/docs/swagger-init.js")).text
        assert "url: '/openapi.json'" in started and "validatorUrl: null" in started
        assert (await client.get("/openapi.json")).status_code == 200


async def test_redoc_and_the_oauth2_redirect_page_are_not_served(api: httpx.AsyncClient) -> None:
    for path in ("/redoc", "/docs/oauth2-redirect"):
        response = await api.get(path)
        assert response.status_code == 404, path
        assert response.json()["code"] == "not_found"


async def test_the_dashboard_runs_no_inline_code(api: httpx.AsyncClient) -> None:
    page = await api.get("/")
    csp = policy(page)
    assert csp["script-src"] == "'self'" and csp["style-src"] == "'self'", csp
    assert csp["object-src"] == "'none'" and csp["frame-ancestors"] == "'none'"
    loads = _Loads()
    loads.feed(page.text)
    assert loads.inline == []


@pytest.mark.browser
def test_swagger_ui_runs_under_its_policy_and_fetches_nothing_elsewhere(stack: Stack) -> None:
    """In a real browser: the page renders the routes and calls one with no policy
    violation, and asks no other origin for anything, not even for a description named in
    its query string."""
    stack.start_orchestrator()
    with chromium() as browser:
        page = browser.new_page()
        errors = page_errors(page)
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        page.goto(f"{stack.api_url}/docs?url=https://example.com/openapi.json")
        workers = page.locator(".opblock-summary-path", has_text="/v1/workers").first
        expect(workers).to_be_visible(timeout=15_000)
        workers.click()  # open it, try it out: the call goes to this origin (no token: 401)
        page.get_by_role("button", name="Try it out").click()
        page.get_by_role("button", name="Execute").click()
        status = page.locator(".live-responses-table tr.response .response-col_status")
        expect(status).to_have_text("401", timeout=15_000)
    refused = "the server responded with a status of 401"
    assert [e for e in errors if refused not in e] == []
    foreign = [u for u in requested if not u.startswith((stack.api_url, "data:"))]
    assert foreign == [] and f"{stack.api_url}/openapi.json" in requested
