"""The web dashboard in a real browser (headless Debian Chromium under Playwright) against a
real orchestrator, adapters, PostgreSQL and Redis: live updates of the board, retry from the
task panel, the graph of a 200-task session, what each role may touch, the confirmations
asked before destroying work, and screenshots of the main views kept as test artifacts
(`test-artifacts/screenshots/`)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from swarm_orchestrator.api.routes import dashboard
from tests.conftest import init_repo
from tests.e2e.browser import (
    SCREENSHOTS,
    chromium,
    layered_graph,
    open_dashboard,
    sign_in,
    task_ids,
)
from tests.e2e.stack import TEST_TOKEN, Stack
from tests.waiting import eventually

LIVE_LIMIT_S = 1.0
"""The board shows a new task within a second of its event."""
UI_TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as running:
        yield running


def _session(client: httpx.Client, repo: Path, tasks: list[dict[str, Any]], **extra: Any) -> str:
    created = client.post(
        "/v1/sessions",
        json={"title": extra.pop("title", "dashboard"), "repo": str(repo), "tasks": tasks, **extra},
    )
    assert created.status_code == 201, created.text
    session_id: str = created.json()["id"]
    return session_id


def _token(client: httpx.Client, name: str, role: str) -> str:
    made = client.post("/v1/tokens", json={"name": name, "role": role})
    assert made.status_code == 201, made.text
    token: str = made.json()["token"]
    return token


def _wait_api(client: httpx.Client, path: str, check: Any, timeout_s: float = 30) -> Any:
    """The body of GET `path` once `check` holds for it."""

    def body() -> Any:
        got = client.get(path).json()
        return got if check(got) else None

    return eventually(
        body,
        timeout_s=timeout_s,
        interval_s=0.2,
        message=lambda: f"{path}: {client.get(path).json()}",
    )


def _card(page: Page, key: str) -> Any:
    return page.locator(f'[data-testid="task-card"][data-task-key="{key}"]')


def _no_page_errors(errors: list[str]) -> None:
    """Uncaught errors fail the test; a failed fetch the page handled (a 404 `no_diff`, a
    409 shown as a toast) is only Chromium's console note."""
    real = [e for e in errors if "Failed to load resource" not in e]
    assert not real, real


def _ms(value: str) -> float:
    return datetime.fromisoformat(value).timestamp() * 1000


STREAM_CHECK = """async (text) => {
  const { EventStream } = await import('/ui/stream.js');
  const bytes = new TextEncoder().encode(text);
  const asked = [];
  window.fetch = async (url, init) => {
    asked.push(init.headers['Last-Event-ID'] ?? null);
    if (asked.length > 1) return new Promise(() => {});  // the second connection stays open
    // One byte per chunk: split inside every "\\r\\n" and inside the two bytes of "é".
    const body = new ReadableStream({
      start(c) { for (const b of bytes) c.enqueue(new Uint8Array([b])); c.close(); },
    });
    return new Response(body, { headers: { 'Content-Type': 'text/event-stream' } });
  };
  const got = [];
  const stream = new EventStream('/v1/sessions/x/events', {
    onEvent: (ev, id) => got.push([ev, id]),
  }).start();
  while (asked.length < 2) await new Promise((r) => setTimeout(r, 20));
  stream.close();
  return { got, asked };
}"""


def test_the_event_stream_reader_takes_any_split_and_resumes(browser: Browser) -> None:
    """The page's own SSE reader (fetch + a stream reader, since EventSource cannot send
    a token) in Chromium, on a stream cut into single bytes: CRLF, CR and LF line ends,
    comments, multi-line data, and a reconnection that sends the last id seen."""
    static = Path(dashboard.STATIC)
    context = browser.new_context(base_url="http://dashboard.test")
    context.route(
        "http://dashboard.test/ui/*",
        lambda route: route.fulfill(
            path=static / route.request.url.rsplit("/", 1)[1], content_type="text/javascript"
        ),
    )
    context.route(
        "http://dashboard.test/",
        lambda route: route.fulfill(
            body="<!doctype html><title>t</title>", content_type="text/html"
        ),
    )
    page = context.new_page()
    page.goto("/")
    text = (
        ": stream open\r\nretry: 50\r\n\r\n"
        'id: 1\r\ndata: {"id": 1, "text": "h\u00e9llo"}\r\n\r\n'
        ": ping\r\n\r\n"
        'id: 2\ndata: {"id": 2,\ndata: "two": "lines"}\n\n'
        'id: 3\rdata: {"id": 3}\r\r'
    )
    result = page.evaluate(STREAM_CHECK, text)
    assert result["got"] == [
        [{"id": 1, "text": "h\u00e9llo"}, "1"],
        [{"id": 2, "two": "lines"}, "2"],
        [{"id": 3}, "3"],
    ]
    assert result["asked"] == [None, "3"]
    context.close()


def test_a_new_task_shows_on_the_board_within_a_second(
    stack: Stack, tmp_path: Path, browser: Browser
) -> None:
    repo = init_repo(tmp_path / "repo")
    stack.start_orchestrator()  # no adapter: tasks stay queued where the test can see them
    hostile = '<img src=x onerror="window.pwned=1"><script>window.pwned=1</script>'
    with stack.client() as client:
        sid = _session(client, repo, [{"key": "first", "title": hostile, "prompt": "true"}])
        page, errors = open_dashboard(browser, stack.api_url, TEST_TOKEN, path=f"/#s={sid}")
        expect(_card(page, "first")).to_have_count(1, timeout=UI_TIMEOUT_MS)
        expect(page.get_by_test_id("live-status")).to_have_attribute("data-state", "open")
        # Untrusted text is text: shown as written, never run.
        expect(_card(page, "first").locator(".card-title")).to_have_text(hostile)
        assert _card(page, "first").locator("img, script").count() == 0
        assert page.evaluate("window.pwned") is None

        seen: list[tuple[float, float, float]] = []
        for n in range(3):
            key = f"late-{n}"
            posted = time.monotonic()
            added = client.post(f"/v1/sessions/{sid}/tasks", json=[{"key": key, "prompt": "true"}])
            assert added.status_code == 201, added.text
            task_id = added.json()[0]["id"]
            page.wait_for_function(
                "id => window.swarmStats.firstSeen[id] !== undefined",
                arg=task_id,
                polling="raf",
                timeout=UI_TIMEOUT_MS,
            )
            since_post = time.monotonic() - posted
            shown, arrived = page.evaluate(
                "id => [window.swarmStats.firstSeen[id], window.swarmStats.created[id]]", task_id
            )
            timeline = client.get(f"/v1/tasks/{task_id}/events").json()
            created = _ms(next(e for e in timeline if e["type"] == "task.created")["created_at"])
            seen.append((since_post, (shown - created) / 1000, (arrived - created) / 1000))
            expect(_card(page, key)).to_be_visible()
        print(  # noqa: T201
            "new task on the board, s after the POST / after its event (of which the event's "
            f"way to the page): {[' / '.join(f'{x:.3f}' for x in s) for s in seen]}"
        )
        for since_post, since_event, _ in seen:
            assert since_post < LIVE_LIMIT_S, seen
            assert since_event < LIVE_LIMIT_S, seen
        expect(page.get_by_test_id("board-column").filter(has=_card(page, "late-0"))).to_have_count(
            1
        )
        _no_page_errors(errors)
        page.context.close()


def test_the_page_reconnects_when_the_orchestrator_restarts(
    stack: Stack, tmp_path: Path, browser: Browser
) -> None:
    repo = init_repo(tmp_path / "repo")
    stack.start_orchestrator()
    with stack.client() as client:
        sid = _session(client, repo, [{"key": "before", "prompt": "true"}])
        page, errors = open_dashboard(browser, stack.api_url, TEST_TOKEN, path=f"/#s={sid}")
        live = page.get_by_test_id("live-status")
        expect(_card(page, "before")).to_have_count(1, timeout=UI_TIMEOUT_MS)
        expect(live).to_have_attribute("data-state", "open")

        server = stack.procs["orchestrator"]
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        expect(live).not_to_have_attribute("data-state", "open", timeout=UI_TIMEOUT_MS)
        stack.start_orchestrator()
        added = client.post(f"/v1/sessions/{sid}/tasks", json=[{"key": "after", "prompt": "true"}])
        assert added.status_code == 201, added.text
        # Resumed from the last entry it saw: the new task shows, nothing shows twice.
        expect(_card(page, "after")).to_have_count(1, timeout=30_000)
        expect(live).to_have_attribute("data-state", "open")
        expect(page.get_by_test_id("task-card")).to_have_count(2)
        _no_page_errors(errors)
        page.context.close()


def test_retry_on_a_failed_task_makes_a_new_attempt(
    stack: Stack, tmp_path: Path, browser: Browser
) -> None:
    repo = init_repo(tmp_path / "repo")
    stack.start_orchestrator()
    stack.start_adapter("shell-a")
    with stack.client() as client:
        sid = _session(
            client,
            repo,
            [
                {"key": "breaks", "prompt": "echo no; exit 1", "max_attempts": 1},
                {"key": "after", "prompt": "true", "depends_on": ["breaks"]},
            ],
        )
        ids = task_ids(client, sid)
        page, errors = open_dashboard(browser, stack.api_url, TEST_TOKEN, path=f"/#s={sid}")
        expect(_card(page, "breaks")).to_have_attribute("data-status", "failed", timeout=30_000)
        expect(_card(page, "after")).to_have_attribute("data-status", "blocked")
        _card(page, "breaks").click()
        panel = page.get_by_test_id("task-panel")
        expect(panel).to_have_attribute("data-task-id", ids["breaks"])
        retry = panel.locator('[data-action="retry"]')
        expect(retry).to_be_visible()
        retry.click()

        def two_attempts(task: dict[str, Any]) -> bool:
            return [a["number"] for a in task["attempts"]] == [1, 2] and task["attempts"][1][
                "status"
            ] in ("failed", "succeeded")

        task = _wait_api(client, f"/v1/tasks/{ids['breaks']}", two_attempts)
        assert task["attempt"] == 2
        # The page follows: the card says attempt 2, the panel lists both attempts.
        expect(_card(page, "breaks").locator(".att")).to_have_text("#2/1", timeout=UI_TIMEOUT_MS)
        expect(_card(page, "breaks")).to_have_attribute("data-status", "failed")
        panel.get_by_test_id("task-tab-attempts").click()
        expect(panel.get_by_test_id("attempt")).to_have_count(2, timeout=UI_TIMEOUT_MS)
        _no_page_errors(errors)
        page.context.close()


def test_the_graph_renders_a_200_task_session(
    stack: Stack, tmp_path: Path, browser: Browser
) -> None:
    repo = init_repo(tmp_path / "repo")
    stack.start_orchestrator()  # no adapter: the tasks wait, queued or pending
    tasks = layered_graph(10, 20)
    edges = sum(len(t["depends_on"]) for t in tasks)
    with stack.client() as client:
        sid = _session(client, repo, tasks, title="two hundred")
        page, errors = open_dashboard(browser, stack.api_url, TEST_TOKEN, path=f"/#s={sid}&v=graph")
        nodes = page.get_by_test_id("graph-node")
        expect(nodes).to_have_count(200, timeout=UI_TIMEOUT_MS)
        expect(page.get_by_test_id("graph-edge")).to_have_count(edges)
        # Coloured by state: what the API says of each task.
        listed = client.get(f"/v1/sessions/{sid}/tasks").json()
        states = {t["key"]: t["status"] for t in listed}
        shown = page.evaluate(
            """() => Object.fromEntries([...document.querySelectorAll(
                '[data-testid="graph-node"]')].map(n => [n.dataset.taskKey, n.dataset.status]))"""
        )
        assert shown == states
        assert {"queued", "pending"} <= set(shown.values())
        # A status change recolours the node, without a new layout.
        layouts = page.evaluate("window.swarmStats.timings.graphLayout.length")
        assert client.post(f"/v1/tasks/{listed[0]['id']}/cancel").status_code == 200
        first = page.locator(f'[data-testid="graph-node"][data-task-key="{listed[0]["key"]}"]')
        expect(first).to_have_attribute("data-status", "cancelled", timeout=UI_TIMEOUT_MS)
        assert page.evaluate("window.swarmStats.timings.graphLayout.length") == layouts
        # Clicking a node opens its task.
        node = page.locator('[data-testid="graph-node"][data-task-key="l9-3"]')
        node.scroll_into_view_if_needed()
        node.click()
        expect(page.get_by_test_id("task-key")).to_have_text("l9-3")
        timings = page.evaluate("window.swarmStats.timings")
        print(  # noqa: T201
            f"graph of 200: layout {timings['graphLayout'][0]} ms, "
            f"render {timings['graphRender'][0]} ms"
        )
        _no_page_errors(errors)
        page.context.close()


def test_each_role_sees_only_the_controls_it_may_use(
    stack: Stack, tmp_path: Path, browser: Browser
) -> None:
    repo = init_repo(tmp_path / "repo")
    stack.start_orchestrator()
    with stack.client() as client:
        sid = _session(client, repo, [{"key": "stopped", "prompt": "true"}])
        ids = task_ids(client, sid)
        assert client.post(f"/v1/tasks/{ids['stopped']}/cancel").status_code == 200
        viewer = _token(client, "viewer-1", "viewer")
        operator = _token(client, "operator-1", "operator")

    where = f"/#s={sid}&t={ids['stopped']}"
    # A wrong token: the login form stays, with the API's message.
    page, errors = open_dashboard(browser, stack.api_url, None, path=where)
    expect(page.get_by_test_id("login-form")).to_be_visible()
    sign_in(page, "not-a-token")
    expect(page.get_by_test_id("login-error")).to_contain_text("unknown, revoked or expired")
    # A viewer reads everything and controls nothing.
    sign_in(page, viewer)
    expect(page.get_by_test_id("whoami")).to_contain_text("viewer")
    panel = page.get_by_test_id("task-panel")
    expect(panel.get_by_test_id("task-status")).to_have_text("cancelled", timeout=UI_TIMEOUT_MS)
    expect(page.get_by_test_id("session-title")).to_be_visible()
    expect(page.locator("[data-action]")).to_have_count(0)
    page.get_by_test_id("tab-system").click()
    expect(page.get_by_test_id("me-role")).to_have_text("viewer")
    expect(page.locator("[data-action]")).to_have_count(0)
    # The token is kept: a reload signs in again, without the form.
    page.reload()
    expect(page.get_by_test_id("whoami")).to_contain_text("viewer")
    expect(page.get_by_test_id("login-form")).to_be_hidden()
    page.get_by_test_id("logout").click()
    expect(page.get_by_test_id("login-form")).to_be_visible()
    assert page.evaluate("localStorage.getItem('swarm.token')") is None

    # An operator retries and controls the session, but not the whole system.
    sign_in(page, operator)
    page.get_by_test_id("tab-board").click()
    expect(panel.locator('[data-action="retry"]')).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.locator('[data-action="cancel-session"]')).to_be_visible()
    expect(page.locator('[data-action="pause"]')).to_be_visible()
    page.get_by_test_id("tab-system").click()
    expect(page.get_by_test_id("me-role")).to_have_text("operator")
    expect(page.get_by_test_id("system-controls").locator("[data-action]")).to_have_count(0)
    page.context.close()

    # An admin without a tenant also drains and stops the system.
    page, admin_errors = open_dashboard(
        browser, stack.api_url, TEST_TOKEN, path=f"/#s={sid}&v=system"
    )
    expect(page.locator('[data-action="drain"]')).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.locator('[data-action="stop"]')).to_be_visible()
    _no_page_errors(errors + admin_errors)
    page.context.close()


def test_destructive_controls_ask_first(stack: Stack, tmp_path: Path, browser: Browser) -> None:
    repo = init_repo(tmp_path / "repo")
    stack.start_orchestrator()
    with stack.client() as client:
        # No adapter runs: both wait, queued; `stays` keeps the session open (not settled)
        # once `waits` is cancelled.
        tasks = [{"key": "waits", "prompt": "true"}, {"key": "stays", "prompt": "true"}]
        sid = _session(client, repo, tasks)
        ids = task_ids(client, sid)
        page, errors = open_dashboard(
            browser, stack.api_url, TEST_TOKEN, path=f"/#s={sid}&t={ids['waits']}"
        )
        dialog = page.get_by_test_id("confirm-dialog")
        cancel = page.get_by_test_id("task-panel").locator('[data-action="cancel"]')
        expect(cancel).to_be_visible(timeout=UI_TIMEOUT_MS)
        # Cancel asks; "Keep" keeps the task.
        cancel.click()
        expect(dialog).to_be_visible()
        page.get_by_test_id("confirm-cancel").click()
        expect(dialog).to_be_hidden()
        assert client.get(f"/v1/tasks/{ids['waits']}").json()["status"] == "queued"
        # Confirmed, it cancels.
        cancel.click()
        page.get_by_test_id("confirm-ok").click()
        _wait_api(client, f"/v1/tasks/{ids['waits']}", lambda t: t["status"] == "cancelled")
        expect(_card(page, "waits")).to_have_attribute(
            "data-status", "cancelled", timeout=UI_TIMEOUT_MS
        )

        # Pause and resume need no confirmation: nothing is lost.
        page.locator('[data-action="pause"]').click()
        _wait_api(client, f"/v1/sessions/{sid}", lambda s: s["status"] == "suspended")
        page.locator('[data-action="resume"]').click()
        _wait_api(client, f"/v1/sessions/{sid}", lambda s: s["status"] == "active")

        # The emergency stop asks, and a refusal changes nothing.
        page.get_by_test_id("tab-system").click()
        page.locator('[data-action="stop"]').click()
        expect(dialog).to_contain_text("Emergency stop?")
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()
        assert client.get("/v1/system").json()["mode"] == "running"
        page.locator('[data-action="drain"]').click()
        page.get_by_test_id("confirm-ok").click()
        expect(page.get_by_test_id("system-mode")).to_have_attribute("data-mode", "draining")
        assert client.get("/v1/system").json()["mode"] == "draining"
        page.locator('[data-action="resume-system"]').click()
        expect(page.get_by_test_id("system-mode")).to_have_attribute("data-mode", "running")
        _no_page_errors(errors)
        page.context.close()


def test_approve_a_task_that_awaits_approval(
    stack: Stack, tmp_path: Path, browser: Browser
) -> None:
    repo = init_repo(tmp_path / "repo")
    stack.start_orchestrator()
    stack.start_adapter("shell-a")
    with stack.client() as client:
        sid = _session(
            client,
            repo,
            [
                {"key": "review-me", "prompt": "echo v2 > app.txt", "requires_approval": True},
                {"key": "ship", "prompt": "true", "depends_on": ["review-me"]},
            ],
        )
        page, errors = open_dashboard(browser, stack.api_url, TEST_TOKEN, path=f"/#s={sid}")
        card = _card(page, "review-me")
        expect(card).to_have_attribute("data-status", "awaiting_approval", timeout=30_000)
        card.click()
        panel = page.get_by_test_id("task-panel")
        panel.get_by_test_id("task-tab-diff").click()
        expect(panel.get_by_test_id("diff-files")).to_contain_text("app.txt")
        panel.locator('[data-action="approve"]').click()
        expect(card).to_have_attribute("data-status", "succeeded", timeout=UI_TIMEOUT_MS)
        expect(_card(page, "ship")).to_have_attribute("data-status", "succeeded", timeout=30_000)
        expect(panel.locator('[data-action="approve"]')).to_have_count(0)
        _no_page_errors(errors)
        page.context.close()


def test_screenshots_of_the_main_views(stack: Stack, tmp_path: Path, browser: Browser) -> None:
    repo = init_repo(tmp_path / "repo")
    stack.start_orchestrator()
    stack.start_adapter("shell-a", concurrency=2)
    tasks = layered_graph(4, 6, prompt="echo work > out-$SWARM_TASK_KEY.txt")
    tasks[2]["prompt"] = "echo 'tests failed'; exit 1"
    tasks.append({"key": "slow", "title": "A long one", "prompt": "sleep 60", "max_attempts": 1})
    gates = {"mode": "strict", "detect": False, "lint": "echo lint: clean"}
    gates["test"] = 'echo "3 passed"; test -f "out-$SWARM_TASK_KEY.txt"'
    with stack.client() as client:
        sid = _session(client, repo, tasks, title="Screenshot session", settings={"gates": gates})
        ids = task_ids(client, sid)

        def settled(session: dict[str, Any]) -> bool:
            counts: dict[str, int] = session["counts"]
            ended = sum(counts.get(k, 0) for k in ("succeeded", "failed", "blocked"))
            return counts.get("running", 0) == 1 and ended == len(tasks) - 1

        _wait_api(client, f"/v1/sessions/{sid}", settled, timeout_s=90)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page, errors = open_dashboard(browser, stack.api_url, TEST_TOKEN, path=f"/#s={sid}")
        expect(page.get_by_test_id("task-card")).to_have_count(len(tasks), timeout=UI_TIMEOUT_MS)
        expect(page.get_by_test_id("progress-done")).to_contain_text(f"/ {len(tasks)} done")
        shots = {"board": page.screenshot(path=SCREENSHOTS / "board.png")}
        page.get_by_test_id("tab-graph").click()
        expect(page.get_by_test_id("graph-node")).to_have_count(len(tasks))
        shots["graph"] = page.screenshot(path=SCREENSHOTS / "graph.png")
        page.get_by_test_id("tab-board").click()
        _card(page, tasks[2]["key"]).click()
        panel = page.get_by_test_id("task-panel")
        expect(panel.get_by_test_id("task-status")).to_have_text("failed")
        panel.get_by_test_id("task-tab-attempts").click()
        expect(panel.get_by_test_id("attempt")).to_have_count(1)
        shots["task"] = page.screenshot(path=SCREENSHOTS / "task.png")
        _card(page, "l3-4").click()
        expect(panel.get_by_test_id("task-status")).to_have_text("succeeded")
        expect(panel.get_by_test_id("gate")).to_have_count(2)
        shots["attempts"] = page.screenshot(path=SCREENSHOTS / "attempts.png")
        panel.get_by_test_id("task-tab-transcript").click()
        transcript = panel.get_by_test_id("transcript-entry")
        expect(transcript.filter(has_text="test: passed")).to_have_count(1)
        expect(transcript.filter(has_text="task.merged")).to_have_count(1)
        shots["transcript"] = page.screenshot(path=SCREENSHOTS / "transcript.png")
        panel.get_by_test_id("task-tab-diff").click()
        expect(panel.get_by_test_id("diff-patch")).to_contain_text("+work")
        shots["diff"] = page.screenshot(path=SCREENSHOTS / "diff.png")
        page.get_by_test_id("task-close").click()
        page.get_by_test_id("tab-adapters").click()
        row = page.get_by_test_id("adapter-row")
        expect(row).to_have_count(1, timeout=UI_TIMEOUT_MS)
        expect(row.get_by_test_id("adapter-task")).to_have_text("slow #1", timeout=UI_TIMEOUT_MS)
        shots["adapters"] = page.screenshot(path=SCREENSHOTS / "adapters.png")
        assert client.post(f"/v1/tasks/{ids['slow']}/cancel").status_code == 200
        _no_page_errors(errors)
        page.context.close()
    for name, png in shots.items():
        assert (SCREENSHOTS / f"{name}.png").stat().st_size > 10_000, name
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
