"""The task panel's Reviews tab in a real browser: a person's comment with "Request
changes" sends a task awaiting approval back to work, and the comment stays on the task."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.conftest import init_repo
from tests.e2e.browser import chromium, open_dashboard
from tests.e2e.stack import TEST_TOKEN, Stack
from tests.waiting import eventually

UI_TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as running:
        yield running


def test_request_changes_from_the_reviews_tab_sends_the_task_back(
    stack: Stack, tmp_path: Path, browser: Browser
) -> None:
    repo = init_repo(tmp_path / "repo")
    stack.start_orchestrator()
    stack.start_adapter("shell-r")
    with stack.client() as client:
        created = client.post(
            "/v1/sessions",
            json={
                "title": "reviews",
                "repo": str(repo),
                "tasks": [
                    {
                        "key": "draft",
                        "prompt": 'echo "try $SWARM_ATTEMPT" > app.txt',
                        "requires_approval": True,
                    }
                ],
            },
        )
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        page, errors = open_dashboard(browser, stack.api_url, TEST_TOKEN, path=f"/#s={sid}")
        card = page.locator('[data-testid="task-card"][data-task-key="draft"]')
        expect(card).to_have_attribute("data-status", "awaiting_approval", timeout=30_000)
        card.click()
        panel = page.get_by_test_id("task-panel")
        panel.get_by_test_id("task-tab-reviews").click()
        expect(panel.get_by_test_id("task-review-list")).to_contain_text("No review or comment")
        panel.get_by_test_id("comment-body").fill("Say hello instead.")
        panel.get_by_test_id("comment-request-changes").check()
        panel.get_by_test_id("comment-send").click()

        comment = panel.get_by_test_id("comment")
        expect(comment).to_contain_text("Say hello instead.", timeout=UI_TIMEOUT_MS)
        expect(comment).to_contain_text("changes requested")
        expect(panel.get_by_test_id("comment-body")).to_have_value("")

        def second_try() -> bool:
            [task] = client.get(f"/v1/sessions/{sid}/tasks").json()
            return task["attempt"] == 2 and task["status"] == "awaiting_approval"

        eventually(second_try, timeout_s=30, message="the task ran again")
        expect(card).to_have_attribute("data-status", "awaiting_approval", timeout=30_000)
        [task] = client.get(f"/v1/sessions/{sid}/tasks").json()
        events = client.get(f"/v1/tasks/{task['id']}/events").json()
        [asked] = [e for e in events if e["type"] == "task.changes_requested"]
        assert asked["data"]["comment"] == "Say hello instead."
        assert not [e for e in errors if "Failed to load resource" not in e], errors
        page.context.close()
