"""The timeline as Server-Sent Events from a running orchestrator: a client that drops the
connection and reconnects with `Last-Event-ID` receives every entry exactly once while other
clients write entries concurrently; a task's stream holds that task's entries only; a
revoked token's stream ends."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import init_repo
from tests.e2e.stack import AUTH, Stack

SSE = {"Accept": "text/event-stream"}


def read_stream(
    url: str,
    *,
    headers: dict[str, str],
    last_id: int | None = None,
    most: int | None = None,
    idle_s: float = 2.0,
) -> tuple[list[dict[str, Any]], bool]:
    """Entries from an SSE stream until `most` arrived (then the connection is dropped) or
    none came for `idle_s`; and whether the server ended the stream itself."""
    if last_id is not None:
        headers = {**headers, "Last-Event-ID": str(last_id)}
    got: list[dict[str, Any]] = []
    fields: dict[str, str] = {}
    timeout = httpx.Timeout(10.0, read=idle_s)
    try:
        with httpx.stream("GET", url, headers={**SSE, **headers}, timeout=timeout) as response:
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if line.startswith(":"):
                    continue
                if line:
                    name, _, value = line.partition(":")
                    fields[name] = value[1:] if value.startswith(" ") else value
                    continue
                if "data" in fields:
                    entry = json.loads(fields["data"])
                    assert fields["id"] == str(entry["id"])
                    got.append(entry)
                    if most is not None and len(got) >= most:
                        return got, False  # leaving the block drops the connection
                fields = {}
    except httpx.ReadTimeout:
        return got, False
    return got, True


def test_a_reconnecting_client_gets_every_entry_exactly_once(stack: Stack, tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo")
    stack.start_orchestrator()
    with stack.client() as api:
        created = api.post("/v1/sessions", json={"title": "sse", "repo": str(repo)})
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        url = f"{stack.api_url}/v1/sessions/{sid}/events"
        rounds, width = 12, 15

        def writer(w: int) -> None:
            """Graphs added by four clients at once: each request's transaction writes
            many entries; the transactions interleave and commit in any order."""
            with stack.client() as mine:
                for r in range(rounds):
                    graph = [{"key": f"w{w}-r{r}-t{i}", "prompt": "true"} for i in range(width)]
                    added = mine.post(f"/v1/sessions/{sid}/tasks", json=graph)
                    assert added.status_code == 201, added.text
                    if r % 4 == 0:  # control actions from another path of the code
                        cancelled = mine.post(f"/v1/tasks/{added.json()[0]['id']}/cancel")
                        assert cancelled.status_code == 200, cancelled.text

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        received: list[dict[str, Any]] = []
        last: int | None = None
        rng = random.Random(7)
        reconnects = 0
        deadline = time.monotonic() + 120
        expected: set[int] | None = None
        while time.monotonic() < deadline:
            got, _ = read_stream(url, headers=AUTH, last_id=last, most=rng.randint(1, 60))
            reconnects += 1
            received.extend(got)
            if got:
                last = got[-1]["id"]
            if expected is None and not any(t.is_alive() for t in threads):
                page = api.get(f"/v1/sessions/{sid}/events", params={"limit": 10_000})
                expected = {e["id"] for e in page.json()}
                in_order = [e["id"] for e in page.json()]
            if expected is not None and {e["id"] for e in received} >= expected:
                break
        for t in threads:
            t.join()

    ids = [e["id"] for e in received]
    assert expected is not None, "the writers did not finish"
    assert len(ids) == len(set(ids)), "an entry was delivered twice"
    assert set(ids) == expected, f"missing: {sorted(expected - set(ids))[:10]}"
    assert ids == in_order  # the stream's order is the timeline's
    assert len(ids) >= 4 * rounds * width  # task.created entries alone
    assert reconnects > 10


def test_a_task_stream_and_a_revoked_token(stack: Stack, tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo")
    stack.start_orchestrator(SWARM_STREAM_TOKEN_CHECK_S="0.5")
    with stack.client() as api:
        graph = [{"key": "a", "prompt": "true"}, {"key": "b", "prompt": "true"}]
        created = api.post("/v1/sessions", json={"title": "sse", "repo": str(repo), "tasks": graph})
        sid = created.json()["id"]
        ids = {t["key"]: t["id"] for t in api.get(f"/v1/sessions/{sid}/tasks").json()}
        assert api.post(f"/v1/tasks/{ids['a']}/cancel").status_code == 200

        got, _ = read_stream(f"{stack.api_url}/v1/tasks/{ids['a']}/events", headers=AUTH)
        assert {e["task_id"] for e in got} == {ids["a"]}
        assert [e["type"] for e in got][-1] == "task.cancelled"
        # `after` (for clients that cannot set a header) resumes as Last-Event-ID does.
        first = got[0]["id"]
        rest, _ = read_stream(
            f"{stack.api_url}/v1/tasks/{ids['a']}/events?after={first}", headers=AUTH
        )
        assert [e["id"] for e in rest] == [e["id"] for e in got[1:]]

        made = api.post("/v1/tokens", json={"name": "watcher", "role": "viewer"})
        assert made.status_code == 201, made.text
        viewer = {"Authorization": f"Bearer {made.json()['token']}"}
        done = threading.Event()
        outcome: dict[str, Any] = {}

        def watch() -> None:
            outcome["got"], outcome["ended"] = read_stream(
                f"{stack.api_url}/v1/sessions/{sid}/events", headers=viewer, idle_s=20
            )
            done.set()

        watcher = threading.Thread(target=watch)
        watcher.start()
        assert not done.wait(1.5)  # streaming, and not ended while the token is valid
        assert api.delete(f"/v1/tokens/{made.json()['id']}").status_code == 200
        assert done.wait(15), "the stream outlived its revoked token"
        watcher.join()
        assert outcome["ended"]  # the server closed it (not the client's idle timeout)
        assert outcome["got"]  # it had streamed the session's entries before
        again = httpx.get(
            f"{stack.api_url}/v1/sessions/{sid}/events", headers={**SSE, **viewer}, timeout=10
        )
        assert again.status_code == 401
