"""Following a timeline (a session's or a task's events) as it grows.

The server streams Server-Sent Events when asked for `text/event-stream`; a dropped
connection is resumed with `Last-Event-ID`, so no entry is lost or seen twice. A server that
answers with JSON pages instead (one without the stream) is polled. `EventPump` runs the
same in a thread, for a screen that must redraw while no event comes.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any

import httpx

from swarm_cli.client import ApiClient, CliError
from swarm_common.backoff import Backoff

__all__ = ["EventPump", "follow_events", "parse_sse"]

Event = dict[str, Any]

GIVE_UP_S = 300.0
"""Stop reconnecting after the server has been away this long."""
POLL_S = 1.0


def parse_sse(lines: Iterable[str]) -> Iterator[tuple[str | None, str] | None]:
    """`(id, data)` per event of an SSE stream; None for a comment (a ping), so a reader can
    look up from a quiet stream."""
    data: list[str] = []
    event_id: str | None = None
    for line in lines:
        if not line:
            if data:
                yield event_id, "\n".join(data)
            data, event_id = [], None
            continue
        if line.startswith(":"):
            yield None
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "id":
            event_id = value
    if data:
        yield event_id, "\n".join(data)


def _decode(data: str) -> Event:
    try:
        event = json.loads(data)
    except ValueError:
        raise CliError("the server sent an event that is not JSON", code="bad_stream") from None
    if not isinstance(event, dict) or "id" not in event:
        raise CliError("the server sent an event without an id", code="bad_stream")
    return event


def follow_events(
    client: ApiClient,
    path: str,
    *,
    after: int = 0,
    poll_s: float = POLL_S,
    give_up_s: float = GIVE_UP_S,
    on_reconnect: Callable[[str], None] | None = None,
) -> Generator[Event | None, None, None]:
    """Every event at `path` after entry `after`, then new ones as they come, forever (the
    caller stops iterating). Yields None now and then while nothing happens (pings, polls).

    Refusals (401, 404) raise `CliError`; so does a server away longer than `give_up_s`,
    or unreachable at the first try."""
    last = after
    connected = False
    failing_since: float | None = None
    backoff = Backoff(base_s=0.5, cap_s=5.0)
    while True:
        headers = {"Accept": "text/event-stream"}
        if last:
            headers["Last-Event-ID"] = str(last)
        try:
            with client.stream(path, headers=headers, params={"after": last}) as response:
                connected, failing_since = True, None
                backoff.succeeded()
                for entry_id, event in _read(response, poll_s):
                    last = entry_id or last
                    yield event
            # The server ended the stream (it stops, or the token needs a fresh check).
            time.sleep(backoff.base_s)
        except httpx.TransportError as exc:
            if not connected:
                raise client.unreachable(exc) from None
            now = time.monotonic()
            failing_since = failing_since or now
            if now - failing_since > give_up_s:
                raise client.unreachable(exc) from None
            if on_reconnect is not None:
                on_reconnect(f"connection lost ({type(exc).__name__}); reconnecting")
            time.sleep(backoff.failed())


def _read(response: httpx.Response, poll_s: float) -> Iterator[tuple[int | None, Event | None]]:
    """`(entry id, event)` for each event of one response, a stream or a JSON page from a
    server that does not stream (then a poll's wait when it was empty); `(None, None)` for a
    ping or the page's end."""
    if "text/event-stream" not in response.headers.get("content-type", ""):
        events = json.loads(response.read())
        for event in events:
            yield int(event["id"]), event
        yield None, None
        if not events:
            time.sleep(poll_s)
        return
    for item in parse_sse(response.iter_lines()):
        if item is None:
            yield None, None
            continue
        event = _decode(item[1])
        yield (int(item[0]) if item[0] and item[0].isdigit() else int(event["id"])), event


class EventPump:
    """`follow_events` in a daemon thread: `get()` waits for the next event at most
    `timeout_s` and returns None when none came; a failure of the thread is raised there."""

    def __init__(self, client: ApiClient, path: str, *, after: int = 0) -> None:
        self._client = client.clone()
        self._queue: queue.Queue[Event | BaseException] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(path, after), name="swarm-events", daemon=True
        )

    def __enter__(self) -> EventPump:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _run(self, path: str, after: int) -> None:
        try:
            for event in follow_events(self._client, path, after=after):
                if self._stop.is_set():
                    return
                if event is not None:
                    self._queue.put(event)
        except Exception as exc:  # handed to the reader, who raises it (unless it stopped)
            if not self._stop.is_set():
                self._queue.put(exc)

    def get(self, timeout_s: float) -> Event | None:
        try:
            item = self._queue.get(timeout=timeout_s)
        except queue.Empty:
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._client.close()
