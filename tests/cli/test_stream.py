"""The CLI's side of the event stream (SSE parsing, resuming with Last-Event-ID after a
dropped connection, polling a server without the stream) and the one-line renderings of
timeline entries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from swarm_cli import render
from swarm_cli.client import ApiClient, CliError
from swarm_cli.stream import follow_events, parse_sse


def entry(n: int, type: str = "task.queued", **data: Any) -> dict[str, Any]:
    return {
        "id": n,
        "session_id": "s",
        "task_id": "t",
        "attempt": 1,
        "type": type,
        "actor": "system",
        "data": data,
        "created_at": "2030-01-01T10:00:00Z",
    }


def test_sse_lines_become_events_and_pings() -> None:
    lines = [": stream open", "retry: 2000", "", "id: 7", 'data: {"a":', "data: 1}", ""]
    lines += [": ping", "id: 8", "data: {}", ""]
    got = list(parse_sse(lines))
    assert got == [None, ("7", '{"a":\n1}'), None, ("8", "{}")]


def client_with(handler: Any) -> ApiClient:
    return ApiClient("http://swarm.test", "t0ken", transport=httpx.MockTransport(handler))


class Dropping(httpx.SyncByteStream):
    """An SSE body that breaks after its events, as a lost connection does."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events

    def __iter__(self) -> Iterator[bytes]:
        for event in self.events:
            yield f"id: {event['id']}\r\ndata: {json.dumps(event)}\r\n\r\n".encode()
        raise httpx.ReadError("connection reset")


def test_a_dropped_stream_resumes_after_the_last_event() -> None:
    seen: list[tuple[str | None, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.headers.get("last-event-id"), request.url.params.get("after")))
        assert request.headers["authorization"] == "Bearer t0ken"
        batch = [entry(1), entry(2)] if len(seen) == 1 else [entry(3)]
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, stream=Dropping(batch)
        )

    notes: list[str] = []
    with client_with(handler) as client:
        events = follow_events(client, "/v1/sessions/s/events", on_reconnect=notes.append)
        got = [next(events)["id"] for _ in range(3)]  # type: ignore[index]
        events.close()
    assert got == [1, 2, 3]
    assert seen == [(None, "0"), ("2", "2")]
    assert notes and "reconnecting" in notes[0]


def test_a_server_without_the_stream_is_polled_in_stream_order() -> None:
    pages = [[entry(5), entry(4)], [], [entry(6)]]
    afters: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        afters.append(request.url.params.get("after"))
        return httpx.Response(200, json=pages.pop(0) if pages else [])

    with client_with(handler) as client:
        got = []
        for event in follow_events(client, "/v1/tasks/t/events", poll_s=0.01):
            if event is not None:
                got.append(event["id"])
            if len(afters) > 3:
                break
    assert got == [5, 4, 6]
    assert afters[:3] == ["0", "4", "4"]  # the last one seen, not the largest


def test_refusals_and_an_unreachable_server_are_cli_errors() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"code": "session_not_found", "message": "no such"})

    with client_with(refuse) as client, pytest.raises(CliError) as refused:
        next(follow_events(client, "/v1/sessions/s/events"))
    assert refused.value.code == "session_not_found" and refused.value.status == 404

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with client_with(down) as client, pytest.raises(CliError) as unreachable:
        next(follow_events(client, "/v1/sessions/s/events"))
    assert unreachable.value.code == "unreachable"


def test_event_states_follow_retries() -> None:
    assert render.event_state(entry(1, "task.failed", will_retry=True)) == "pending"
    assert render.event_state(entry(1, "task.failed", will_retry=False)) == "failed"
    assert render.event_state(entry(1, "task.approved")) == "succeeded"
    assert render.event_state(entry(1, "task.progress")) is None


def test_a_transcript_entry_is_a_line_per_item() -> None:
    progress = entry(
        1,
        "task.progress",
        kind="activity",
        text="Editing",
        data={
            "items": [
                {"kind": "message", "text": "I will edit [bold]x[/]"},
                {"kind": "tool_call", "text": "Edit app.py", "data": {"tool": "Edit"}},
                {"kind": "tool_result", "text": "boom", "data": {"is_error": True}},
                {"kind": "file_change", "text": "app.py"},
            ],
            "counts": {"message": 1},
            "dropped": 2,
        },
    )
    lines = render.event_lines(progress, key="build")
    assert len(lines) == 5 and "build" in lines[0]
    assert "I will edit \\[bold]x\\[/]" in lines[0]  # the agent's text is not markup
    assert "→ Edit app.py" in lines[1] and "[red]← boom" in lines[2] and "✎ app.py" in lines[3]
    assert "2 more item(s)" in lines[4]
    assert len(render.event_lines(progress, brief=True)) == 1


def test_an_outcome_says_what_matters_once() -> None:
    failed = entry(
        1,
        "task.failed",
        reason="exit_code",
        error="exited with code 3",
        exit_code=3,
        will_retry=True,
        duration_s=75,
        gates=[{"name": "test", "status": "failed"}],
    )
    (line,) = render.event_lines(failed)
    assert "exited with code 3" in line and "exit_code" not in line
    assert "will retry" in line and "1m15s" in line and "gates: test failed" in line
    assert render.failure("timeout", "timed out after 5s") == "timeout: timed out after 5s"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (5.2, "5s"), (185, "3m05s"), (7500, "2h05m"), (90000, "1d01h")],
)
def test_durations(seconds: float | None, text: str) -> None:
    assert render.duration(seconds) == text


def test_token_counts_and_costs() -> None:
    assert render.tokens({"input": 1200, "cached_input": 1000, "output": 300}) == "1.5k"
    assert render.tokens(2_500_000) == "2.50M" and render.tokens(None) == "-"
    assert render.money(0.01234) == "$0.0123" and render.money(12.5) == "$12.50"
    assert render.money(None) == "-"
