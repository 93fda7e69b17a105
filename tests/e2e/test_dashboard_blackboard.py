"""The dashboard's Blackboard tab in a real browser against a real orchestrator and a shell
adapter: a shell task hands off facts and two follow-ups (delegation `approve`); the tab
shows the facts, a person writes one and opens a key's history, accepts one follow-up (it
becomes a task of the session) and refuses the other; a viewer sees no controls."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.conftest import init_repo
from tests.e2e.browser import SCREENSHOTS, chromium, open_dashboard
from tests.e2e.stack import TEST_TOKEN, Stack
from tests.e2e.test_dashboard import _no_page_errors, _session, _token, _wait_api

UI_TIMEOUT_MS = 15_000
HANDOFF = {
    "summary": "Built the API.",
    "facts": {"api.base": "/v2"},
    "follow_ups": [
        {"key": "client", "title": "Write the client", "prompt": "true"},
        {"key": "load-test", "title": "Load test it", "prompt": "true"},
    ],
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as running:
        yield running


def test_the_blackboard_tab_shows_facts_and_decides_proposals(
    stack: Stack, tmp_path: Path, browser: Browser
) -> None:
    stack.start_orchestrator()
    stack.start_adapter("shell-1", SWARM_ALLOW_SHELL_AGENT="true")
    repo = init_repo(tmp_path / "project")
    prompt = f"cat <<'EOF'\n```swarm-handoff\n{json.dumps(HANDOFF)}\n```\nEOF"
    with stack.client() as client:
        sid = _session(client, repo, [{"key": "api", "prompt": prompt}], title="handoffs")
        _wait_api(client, f"/v1/sessions/{sid}/proposals", lambda p: len(p) == 2)
        viewer = _token(client, "bb-viewer", "viewer")

    page, errors = open_dashboard(
        browser, stack.api_url, TEST_TOKEN, path=f"/#s={sid}&v=blackboard"
    )
    rows = page.get_by_test_id("fact-row")
    expect(rows).to_have_count(1, timeout=UI_TIMEOUT_MS)
    expect(rows.first).to_contain_text("api.base")
    expect(rows.first).to_contain_text("task:api")

    page.get_by_test_id("fact-key").fill("db.engine")
    page.get_by_test_id("fact-value").fill('{"name": "postgres"}')
    page.get_by_test_id("fact-write").click()
    expect(rows).to_have_count(2, timeout=UI_TIMEOUT_MS)
    page.locator('[data-testid="fact-row"][data-key="db.engine"] button').click()
    expect(page.get_by_test_id("blackboard-history")).to_contain_text("postgres")

    proposals = page.get_by_test_id("proposal-row")
    expect(proposals).to_have_count(2, timeout=UI_TIMEOUT_MS)
    page.locator('[data-testid="proposal-row"][data-key="client"]').get_by_test_id(
        "proposal-accept"
    ).click()
    expect(page.locator('[data-testid="proposal-row"][data-key="client"]')).to_have_attribute(
        "data-status", "accepted", timeout=UI_TIMEOUT_MS
    )
    page.locator('[data-testid="proposal-row"][data-key="load-test"]').get_by_test_id(
        "proposal-refuse"
    ).click()
    page.get_by_test_id("confirm-ok").click()
    expect(page.locator('[data-testid="proposal-row"][data-key="load-test"]')).to_have_attribute(
        "data-status", "refused", timeout=UI_TIMEOUT_MS
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "blackboard.png"), full_page=True)
    with stack.client() as client:
        keys = {t["key"] for t in client.get(f"/v1/sessions/{sid}/tasks").json()}
        assert keys == {"api", "client"}
        board = client.get(f"/v1/sessions/{sid}/blackboard").json()
        assert {f["key"]: f["value"] for f in board["facts"]} == {
            "api.base": "/v2",
            "db.engine": {"name": "postgres"},
        }
    _no_page_errors(errors)

    page, errors = open_dashboard(browser, stack.api_url, viewer, path=f"/#s={sid}&v=blackboard")
    expect(page.get_by_test_id("fact-row")).to_have_count(2, timeout=UI_TIMEOUT_MS)
    expect(page.get_by_test_id("fact-form")).to_be_hidden()
    expect(page.get_by_test_id("proposal-accept")).to_have_count(0)
    _no_page_errors(errors)
