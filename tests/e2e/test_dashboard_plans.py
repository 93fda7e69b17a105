"""From a goal to an approved plan in the dashboard (headless Debian Chromium under
Playwright, against a real orchestrator, shell adapter, PostgreSQL and Redis): a session
made from a goal with the heuristic planner, its tasks edited in place, feedback, approval
and the run to merged; an edit refused because the plan changed behind the page's back;
what a viewer sees of a plan; and a rollback to a passed checkpoint from the session's
controls."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.conftest import init_repo
from tests.e2e.browser import SCREENSHOTS, chromium, open_dashboard
from tests.e2e.stack import TEST_TOKEN, Stack
from tests.waiting import eventually

pytestmark = pytest.mark.browser

UI_TIMEOUT_MS = 15_000
RUN_TIMEOUT_MS = 60_000
GOAL = "1. First step\n2. Second step\n"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as running:
        yield running


def _planned(client: httpx.Client, repo: Path, **extra: Any) -> str:
    """A draft session planned from GOAL by the heuristic planner (ready at once)."""
    made = client.post(
        "/v1/sessions",
        json={
            "title": "planned",
            "goal": GOAL,
            "repo": str(repo),
            "base_ref": "main",
            "plan": True,
            "settings": {"planner": {"agent": "heuristic"}},
            **extra,
        },
    )
    assert made.status_code == 201, made.text
    assert made.json()["plan_status"] == "ready", made.text
    session_id: str = made.json()["id"]
    return session_id


def _plan_task(page: Page, key: str) -> Locator:
    return page.locator(f'[data-testid="plan-task"][data-key="{key}"]')


def _card(page: Page, key: str) -> Locator:
    return page.locator(f'[data-testid="task-card"][data-task-key="{key}"]')


def _edit(page: Page, key: str, **fields: str) -> None:
    """Open a plan task's editor (when closed) and fill its fields in place."""
    task = _plan_task(page, key)
    if task.get_by_test_id("plan-task-editor").count() == 0:
        task.get_by_test_id("plan-task-edit").click()
    for name, value in fields.items():
        field = task.get_by_test_id(f"plan-field-{name}")
        if name == "agent":
            field.select_option(value)
        else:
            field.fill(value)


def _revision(page: Page) -> Locator:
    return page.get_by_test_id("plan-revision")


def _no_page_errors(errors: list[str]) -> None:
    """Uncaught errors fail the test; a refused request the page handled (a 409 or 422
    shown beside the form) is only Chromium's console note."""
    real = [e for e in errors if "Failed to load resource" not in e]
    assert not real, real


def test_a_goal_is_planned_edited_revised_approved_and_run(
    stack: Stack, tmp_path: Path, browser: Browser
) -> None:
    repo = init_repo(tmp_path / "repo")
    stack.start_orchestrator()
    stack.start_adapter("shell-a")
    page, errors = open_dashboard(browser, stack.api_url, TEST_TOKEN)

    # A session from a goal: the title comes from its first line.
    page.get_by_test_id("new-session").click()
    form = page.get_by_test_id("new-session-dialog")
    expect(form).to_be_visible()
    form.get_by_test_id("new-session-goal").fill(GOAL)
    expect(form.get_by_test_id("new-session-title")).to_have_attribute("placeholder", "First step")
    form.get_by_test_id("new-session-repo").fill(str(repo))
    form.get_by_test_id("new-session-base").fill("main")
    form.get_by_test_id("new-session-planner").select_option("heuristic")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "new-session.png")
    form.get_by_test_id("new-session-submit").click()
    expect(form).to_be_hidden()

    # Its draft opens on the plan: ready, revision 1, the goal's two steps in order.
    view = page.get_by_test_id("view-plan")
    expect(view).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.get_by_test_id("session-title")).to_have_text("First step")
    expect(page.get_by_test_id("session-draft")).to_contain_text("plan ready")
    expect(page.get_by_test_id("plan-status")).to_have_attribute("data-status", "ready")
    expect(_revision(page)).to_have_attribute("data-revision", "1")
    expect(view.get_by_test_id("plan-task-key")).to_have_text(["first-step", "second-step"])
    expect(_plan_task(page, "second-step").get_by_test_id("plan-task-deps")).to_have_text(
        "after first-step"
    )
    sid = page.evaluate("window.swarm.sessionId")
    assert page.evaluate("location.hash") == f"#s={sid}&v=plan"
    approve = page.get_by_test_id("plan-approve")
    expect(approve).to_be_enabled()

    # Each task edited in place to run on the shell adapter, in one phase, with estimates.
    for key, hours in (("first-step", "1.5"), ("second-step", "2")):
        _edit(
            page,
            key,
            agent="shell",
            prompt=f"echo {key} > {key}.txt",
            phase="Build",
            estimated_hours=hours,
        )
    expect(page.get_by_test_id("plan-savebar")).to_be_visible()
    expect(approve).to_be_disabled()  # not with unsaved edits
    page.get_by_test_id("plan-save").click()
    expect(_revision(page)).to_have_attribute("data-revision", "2", timeout=UI_TIMEOUT_MS)
    expect(page.get_by_test_id("plan-notice")).to_contain_text("Saved as revision 2")
    expect(page.get_by_test_id("plan-savebar")).to_be_hidden()
    build = page.locator('[data-testid="plan-group"][data-phase="Build"]')
    expect(build.get_by_test_id("plan-group-totals")).to_have_text("2 tasks · 3.5 h")
    expect(page.get_by_test_id("plan-totals")).to_have_text("2 tasks · 3.5 h")
    with stack.client() as client:
        plan = client.get(f"/v1/sessions/{sid}/plan").json()
    assert plan["revision"] == 2
    assert [(t["agent"], t["prompt"], t["phase"]) for t in plan["tasks"]] == [
        ("shell", "echo first-step > first-step.txt", "Build"),
        ("shell", "echo second-step > second-step.txt", "Build"),
    ]

    # Feedback: the heuristic planner adds the task the message lists, as revision 3.
    page.get_by_test_id("plan-feedback-input").fill("- Third step")
    page.get_by_test_id("plan-feedback-send").click()
    expect(_revision(page)).to_have_attribute("data-revision", "3", timeout=UI_TIMEOUT_MS)
    messages = page.get_by_test_id("plan-message")
    expect(messages.filter(has_text="- Third step")).to_have_count(1)
    expect(messages.last).to_have_attribute("data-role", "planner")
    expect(messages.last).to_contain_text("rev 3")
    expect(_plan_task(page, "third-step")).to_have_count(1)

    # A dependency on no task: 422, every error beside the form, nothing stored.
    _edit(page, "third-step", agent="shell", prompt="echo third > third.txt", depends_on="nope")
    page.get_by_test_id("plan-save").click()
    expect(page.get_by_test_id("plan-errors")).to_contain_text("nope", timeout=UI_TIMEOUT_MS)
    expect(_revision(page)).to_have_attribute("data-revision", "3")
    _edit(page, "third-step", depends_on="second-step")
    page.get_by_test_id("plan-save").click()
    expect(_revision(page)).to_have_attribute("data-revision", "4", timeout=UI_TIMEOUT_MS)
    expect(page.get_by_test_id("plan-errors")).to_be_hidden()

    # The same plan as a graph.
    page.get_by_test_id("plan-tab-graph").click()
    graph = page.get_by_test_id("plan-graph")
    expect(graph.get_by_test_id("graph-node")).to_have_count(3)
    expect(graph.get_by_test_id("graph-edge")).to_have_count(2)
    page.screenshot(path=SCREENSHOTS / "plan-graph.png")
    page.get_by_test_id("plan-tab-list").click()
    page.screenshot(path=SCREENSHOTS / "plan.png")

    # Approved, it runs: the board follows every task to merged, grouped by phase.
    approve.click()
    expect(page.get_by_test_id("view-board")).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.get_by_test_id("session-draft")).to_have_count(0)
    for key in ("first-step", "second-step", "third-step"):
        expect(_card(page, key)).to_have_attribute("data-merge", "merged", timeout=RUN_TIMEOUT_MS)
        expect(_card(page, key)).to_have_attribute("data-status", "succeeded")
    expect(page.get_by_test_id("progress-done")).to_have_text("3 / 3 done")
    chip = page.locator('[data-testid="board-group-chip"][data-group="Build"]')
    expect(chip).to_contain_text("2/2", timeout=UI_TIMEOUT_MS)
    expect(chip).to_contain_text("3.5 h")
    page.screenshot(path=SCREENSHOTS / "plan-ran.png")
    # The plan stays, read only: approved.
    page.get_by_test_id("tab-plan").click()
    expect(page.get_by_test_id("plan-status")).to_have_attribute(
        "data-status", "approved", timeout=UI_TIMEOUT_MS
    )
    expect(page.get_by_test_id("plan-approve")).to_be_hidden()
    expect(page.get_by_test_id("plan-task-edit")).to_have_count(0)
    _no_page_errors(errors)
    page.context.close()


def test_an_edit_made_on_a_stale_revision_is_refused(
    stack: Stack, tmp_path: Path, browser: Browser
) -> None:
    repo = init_repo(tmp_path / "repo")
    stack.start_orchestrator()
    with stack.client() as client:
        sid = _planned(client, repo)
        page, errors = open_dashboard(browser, stack.api_url, TEST_TOKEN, path=f"/#s={sid}")
        expect(page.get_by_test_id("view-plan")).to_be_visible(timeout=UI_TIMEOUT_MS)
        expect(_revision(page)).to_have_attribute("data-revision", "1")
        _edit(page, "first-step", title="Mine")
        expect(page.get_by_test_id("plan-savebar")).to_be_visible()

        # Someone else's revision, behind the page's back.
        theirs = client.patch(
            f"/v1/sessions/{sid}/plan",
            json={
                "base_revision": 1,
                "changes": [{"op": "update", "key": "second-step", "set": {"title": "Theirs"}}],
            },
        )
        assert theirs.status_code == 200, theirs.text
        notice = page.get_by_test_id("plan-notice")
        # The page hears of it while its edits are unsaved, and keeps them.
        expect(notice).to_contain_text("Revision 2 was made meanwhile", timeout=UI_TIMEOUT_MS)
        expect(_plan_task(page, "first-step").get_by_test_id("plan-task-title")).to_have_text(
            "Mine"
        )
        page.get_by_test_id("plan-save").click()
        expect(notice).to_contain_text("Not saved: the plan changed meanwhile")
        expect(notice).to_have_attribute("data-kind", "stale")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / "plan-stale.png")
        # Reloaded: their revision shows, the page's edit is gone and nothing was stored.
        expect(_revision(page)).to_have_attribute("data-revision", "2")
        expect(_plan_task(page, "second-step").get_by_test_id("plan-task-title")).to_have_text(
            "Theirs"
        )
        expect(_plan_task(page, "first-step").get_by_test_id("plan-task-title")).to_have_text(
            "First step"
        )
        expect(page.get_by_test_id("plan-savebar")).to_be_hidden()
        plan = client.get(f"/v1/sessions/{sid}/plan").json()
        assert plan["latest_revision"] == 2
        assert plan["tasks"][0]["title"] == "First step"

        # With no edits of its own, a newer revision simply replaces what the page shows.
        again = client.patch(
            f"/v1/sessions/{sid}/plan",
            json={"base_revision": 2, "changes": [{"op": "remove", "key": "second-step"}]},
        )
        assert again.status_code == 200, again.text
        expect(_revision(page)).to_have_attribute("data-revision", "3", timeout=UI_TIMEOUT_MS)
        expect(page.get_by_test_id("plan-task")).to_have_count(1)
        _no_page_errors(errors)
        page.context.close()

        # A viewer reads the plan and the conversation, and changes nothing.
        made = client.post("/v1/tokens", json={"name": "viewer-plan", "role": "viewer"})
        assert made.status_code == 201, made.text
        page, errors = open_dashboard(
            browser, stack.api_url, made.json()["token"], path=f"/#s={sid}"
        )
        expect(page.get_by_test_id("plan-task")).to_have_count(1, timeout=UI_TIMEOUT_MS)
        expect(page.get_by_test_id("plan-message")).not_to_have_count(0)
        expect(page.get_by_test_id("plan-approve")).to_be_hidden()
        expect(page.get_by_test_id("plan-feedback")).to_be_hidden()
        expect(page.get_by_test_id("plan-task-edit")).to_have_count(0)
        expect(page.get_by_test_id("new-session")).to_be_hidden()
        _no_page_errors(errors)
        page.context.close()


def test_while_the_planner_works_the_plan_is_locked(
    stack: Stack, tmp_path: Path, browser: Browser
) -> None:
    """A planning agent's run (claude, which no adapter serves here, so it waits): progress
    shown and every control locked; the run cancelled, the planning fails, and a plan
    written by hand on revision 0 is ready to approve."""
    repo = init_repo(tmp_path / "repo")
    stack.start_orchestrator()
    with stack.client() as client:
        made = client.post(
            "/v1/sessions",
            json={
                "title": "agent planned",
                "goal": GOAL,
                "repo": str(repo),
                "base_ref": "main",
                "plan": True,
                "settings": {"planner": {"agent": "claude"}},
            },
        )
        assert made.status_code == 201, made.text
        assert made.json()["plan_status"] == "planning"
        sid = made.json()["id"]
        page, errors = open_dashboard(browser, stack.api_url, TEST_TOKEN, path=f"/#s={sid}")
        planning = page.get_by_test_id("plan-planning")
        expect(planning).to_be_visible(timeout=UI_TIMEOUT_MS)
        expect(planning).to_contain_text("claude")
        expect(page.get_by_test_id("plan-status")).to_have_attribute("data-status", "planning")
        for control in ("plan-approve", "plan-add", "plan-feedback-input", "plan-feedback-send"):
            expect(page.get_by_test_id(control)).to_be_disabled()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / "plan-planning.png")

        runs = client.get(f"/v1/sessions/{sid}/tasks", params={"kind": "plan"}).json()
        assert len(runs) == 1, runs
        assert client.post(f"/v1/tasks/{runs[0]['id']}/cancel").status_code == 200
        expect(page.get_by_test_id("plan-status")).to_have_attribute(
            "data-status", "failed", timeout=UI_TIMEOUT_MS
        )
        expect(planning).to_be_hidden()
        expect(page.get_by_test_id("plan-error")).to_be_visible()
        expect(page.get_by_test_id("plan-replan")).to_be_visible()
        expect(page.get_by_test_id("plan-approve")).to_be_disabled()

        # A plan by hand.
        page.get_by_test_id("plan-add").click()
        task = page.get_by_test_id("plan-task")
        expect(task).to_have_count(1)
        task.get_by_test_id("plan-field-key").fill("by-hand")
        task.get_by_test_id("plan-field-agent").select_option("shell")
        task.get_by_test_id("plan-field-prompt").fill("echo hand > hand.txt")
        page.get_by_test_id("plan-save").click()
        expect(_revision(page)).to_have_attribute("data-revision", "1", timeout=UI_TIMEOUT_MS)
        expect(page.get_by_test_id("plan-status")).to_have_attribute("data-status", "ready")
        expect(page.get_by_test_id("plan-approve")).to_be_enabled()
        plan = client.get(f"/v1/sessions/{sid}/plan").json()
        assert [(t["key"], t["agent"]) for t in plan["tasks"]] == [("by-hand", "shell")]
        _no_page_errors(errors)
        page.context.close()


def test_rollback_to_a_passed_checkpoint_beside_checkpoint(
    stack: Stack, tmp_path: Path, browser: Browser
) -> None:
    repo = init_repo(tmp_path / "repo")
    stack.start_orchestrator()
    stack.start_adapter("shell-a")
    tasks = [
        {"key": "a", "prompt": "echo a > a.txt", "phase": "One"},
        # No adapter runs claude here: it keeps the session open, queued.
        {"key": "idle", "prompt": "wait", "agent": "claude", "phase": "Two"},
    ]
    with stack.client() as client:
        made = client.post(
            "/v1/sessions",
            json={"title": "rollback", "repo": str(repo), "base_ref": "main", "tasks": tasks},
        )
        assert made.status_code == 201, made.text
        sid = made.json()["id"]
        page, errors = open_dashboard(browser, stack.api_url, TEST_TOKEN, path=f"/#s={sid}")
        expect(_card(page, "a")).to_have_attribute("data-merge", "merged", timeout=RUN_TIMEOUT_MS)
        # The tasks carry phases: the board groups them.
        expect(page.locator('[data-testid="board-group-chip"][data-group="One"]')).to_contain_text(
            "1/1", timeout=UI_TIMEOUT_MS
        )
        expect(page.locator('[data-testid="card-group"][data-group="Two"]')).to_have_count(1)

        # Nothing passed yet: nothing to roll back to.
        page.get_by_test_id("session-rollback").click()
        expect(
            page.get_by_test_id("toast").filter(has_text="No checkpoint has passed")
        ).to_be_visible()

        page.get_by_test_id("session-checkpoint").click()

        def passed() -> bool:
            listed = client.get(f"/v1/sessions/{sid}/checkpoints").json()
            return bool(listed) and listed[0]["status"] == "passed"

        eventually(passed, timeout_s=60, message="checkpoint 1 passed")
        added = client.post(
            f"/v1/sessions/{sid}/tasks", json=[{"key": "b", "prompt": "echo b > b.txt"}]
        )
        assert added.status_code == 201, added.text
        expect(_card(page, "b")).to_have_attribute("data-merge", "merged", timeout=RUN_TIMEOUT_MS)

        # Rollback asks which checkpoint; "Keep" changes nothing.
        dialog = page.get_by_test_id("choose-dialog")
        page.get_by_test_id("session-rollback").click()
        expect(dialog).to_be_visible()
        expect(dialog.get_by_test_id("choose-select").locator("option")).to_have_count(1)
        page.get_by_test_id("choose-cancel").click()
        expect(dialog).to_be_hidden()
        listed = client.get(f"/v1/sessions/{sid}/tasks").json()
        assert next(t for t in listed if t["key"] == "b")["merge_status"] == "merged"
        page.get_by_test_id("session-rollback").click()
        dialog.get_by_test_id("choose-select").select_option("1")
        page.get_by_test_id("choose-ok").click()
        expect(_card(page, "b")).to_have_attribute(
            "data-merge", "rolled_back", timeout=UI_TIMEOUT_MS
        )
        expect(_card(page, "a")).to_have_attribute("data-merge", "merged")
        expect(
            page.get_by_test_id("toast").filter(has_text="Rolled back to checkpoint 1")
        ).to_be_visible()
        _no_page_errors(errors)
        page.context.close()
