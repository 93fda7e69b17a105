"""Driving the dashboard in a real browser: Debian's Chromium (`/usr/bin/chromium`) under
Playwright, never a downloaded browser. Used by `tests/e2e/test_dashboard.py` and
`bench/dashboard.py`."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Playwright,
    ViewportSize,
    sync_playwright,
)

__all__ = [
    "CHROMIUM",
    "SCREENSHOTS",
    "TOKEN_KEY",
    "chromium",
    "layered_graph",
    "open_dashboard",
    "page_errors",
    "sign_in",
    "task_ids",
]

CHROMIUM = os.environ.get("SWARM_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
TOKEN_KEY = "swarm.token"
"""Where the dashboard keeps the token (localStorage)."""
VIEWPORT: ViewportSize = {"width": 1440, "height": 900}


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium for the whole `with` block."""
    with sync_playwright() as p:
        browser = _launch(p)
        try:
            yield browser
        finally:
            browser.close()


def _launch(p: Playwright) -> Browser:
    return p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def page_errors(page: Page) -> list[str]:
    """Collect the page's uncaught errors and console errors into a list (kept current)."""
    found: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            found.append(f"console: {message.text}")

    page.on("pageerror", lambda exc: found.append(f"pageerror: {exc}"))
    page.on("console", on_console)
    return found


def open_dashboard(
    browser: Browser, api_url: str, token: str | None, *, path: str = "/"
) -> tuple[Page, list[str]]:
    """A new page on the dashboard, with `token` already in its storage (as if entered
    once before); None leaves the login form up."""
    context = browser.new_context(viewport=VIEWPORT, base_url=api_url)
    if token is not None:
        context.add_init_script(f"window.localStorage.setItem({TOKEN_KEY!r}, {_js_string(token)});")
    page = context.new_page()
    errors = page_errors(page)
    page.goto(path)
    return page, errors


def sign_in(page: Page, token: str) -> None:
    """Use the login form the way a person does."""
    page.get_by_test_id("token-input").fill(token)
    page.get_by_test_id("login-submit").click()


def _js_string(value: str) -> str:
    import json

    return json.dumps(value)


def layered_graph(
    layers: int, width: int, *, prompt: str = "true", fan_in: int = 2
) -> list[dict[str, Any]]:
    """`layers` × `width` tasks; each depends on `fan_in` tasks of the layer before."""
    tasks = []
    for layer in range(layers):
        for i in range(width):
            deps = []
            if layer:
                deps = sorted({f"l{layer - 1}-{(i + k) % width}" for k in range(fan_in)})
            tasks.append(
                {
                    "key": f"l{layer}-{i}",
                    "title": f"Layer {layer} task {i}",
                    "prompt": prompt,
                    "depends_on": deps,
                    "max_attempts": 1,
                }
            )
    return tasks


def task_ids(client: httpx.Client, session_id: str) -> dict[str, str]:
    """Task keys to ids."""
    tasks = client.get(f"/v1/sessions/{session_id}/tasks").json()
    return {t["key"]: t["id"] for t in tasks}
