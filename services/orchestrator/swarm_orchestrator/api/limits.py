"""Limits on a request body, enforced before the app parses it, so that no single request
can hold the event loop (every other caller's requests) for long:

- `BodyLimit` (pure ASGI) counts the body's bytes and follows its JSON nesting as it streams
  in: over `max_bytes` is a 413 `body_too_large`, nested deeper than `max_depth` a 422
  `too_deep` (a parser or serializer would otherwise recurse until it fails);
- `GraphRoute` (a FastAPI route class) counts the dependency edges of a submitted task graph
  on the body's bytes: more than `max_graph_edges` is a 422 `graph_too_dense` before the JSON
  is parsed and each of its keys validated, which takes seconds for a dense graph. A graph
  within the limits is parsed and validated in a worker thread, not in the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from swarm_common.jsontext import Nesting, count_entries
from swarm_common.specs import TaskSpec
from swarm_orchestrator.api.errors import error_response
from swarm_orchestrator.errors import Invalid, SwarmError
from swarm_orchestrator.graph.validation import check_edges

__all__ = ["BodyLimit", "GraphRoute"]


class BodyLimit:
    """Answer 413 `body_too_large` for a body over `max_bytes`, whether it announces its
    size (`Content-Length`) or streams in chunks, and 422 `too_deep` for JSON nested deeper
    than `max_depth` (arrays and objects; `[]` is 1 deep)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, max_depth: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await _refuse(send, _too_large(self.max_bytes))
            return
        request = _Watched(receive, send, max_bytes=self.max_bytes, max_depth=self.max_depth)
        try:
            await self.app(scope, request.receive, request.send)
        except Exception:
            if request.refusal is None:
                raise
        await request.finish()


class _Watched:
    """One request's body, counted and scanned as it streams. Past a limit the app sees a
    disconnect (whatever it then does), and the client gets the refusal instead of the app's
    answer."""

    def __init__(self, receive: Receive, send: Send, *, max_bytes: int, max_depth: int) -> None:
        self._receive = receive
        self._send = send
        self._max_bytes = max_bytes
        self._max_depth = max_depth
        self._seen = 0
        self._nesting = Nesting()
        self.refusal: SwarmError | None = None
        self._responded = False

    async def receive(self) -> Message:
        if self.refusal is not None:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            self.refusal = self._check(message.get("body", b""))
            if self.refusal is not None:
                return {"type": "http.disconnect"}
        return message

    def _check(self, chunk: bytes) -> SwarmError | None:
        self._seen += len(chunk)
        if self._seen > self._max_bytes:
            return _too_large(self._max_bytes)
        if self._nesting.feed(chunk) > self._max_depth:
            return Invalid(
                f"the request body nests arrays and objects deeper than {self._max_depth} levels",
                code="too_deep",
                details={"limit": self._max_depth},
            )
        return None

    async def send(self, message: Message) -> None:
        if self.refusal is None:
            await self._send(message)
        else:
            await self.finish()

    async def finish(self) -> None:
        if self.refusal is not None and not self._responded:
            self._responded = True
            await _refuse(self._send, self.refusal)


def _too_large(max_bytes: int) -> SwarmError:
    return SwarmError(
        f"the request body exceeds {max_bytes} bytes",
        code="body_too_large",
        status=413,
        details={"limit": max_bytes},
    )


async def _refuse(send: Send, error: SwarmError) -> None:
    """Answer `error`; the connection closes, since the rest of the body is not read."""
    response = error_response(
        error.status, error.code, error.message, error.details, headers={"connection": "close"}
    )
    await response({"type": "http"}, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


class GraphRoute(APIRoute):
    """A route whose POST body may hold a task graph (`depends_on` under each task): its
    edges are counted on the bytes (a C-speed scan, under a tenth of a second for 16 MB)
    before FastAPI parses and validates them. The exact count, and the session's total, are
    checked again when the graph is validated (`graph/validation.py`)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def counted(request: Request) -> Response:
            request = _GraphRequest(request.scope, request.receive)
            body = await request.body() if request.method == "POST" else b""
            if body:
                # A few C calls of some 20 ms each on 16 MB: in a thread, the event loop gets
                # the interpreter back between them.
                most = request.app.state.swarm.settings.max_graph_edges
                edges = await asyncio.to_thread(count_entries, body, "depends_on")
                check_edges(edges, max_edges=most)
                with contextlib.suppress(ValueError):  # not JSON: FastAPI says so
                    check_edges(await request.edges(), max_edges=most)
            return await handler(request)

        return counted


_TASKS = TypeAdapter(list[TaskSpec])


class _GraphRequest(Request):
    """A request whose JSON body is parsed, and its tasks validated, in a worker thread.
    FastAPI would do both in the event loop (a tenth of a second for a graph at the limits);
    handed `TaskSpec`s, its own validation takes microseconds."""

    _parsed: tuple[Any, int] | None = None

    async def json(self) -> Any:
        return (await self._parse())[0]

    async def edges(self) -> int:
        """The `depends_on` entries of the parsed graph: a key written with escapes
        (`"depends\\u005fon"`) escapes the count on the bytes, not this one."""
        return (await self._parse())[1]

    async def _parse(self) -> tuple[Any, int]:
        if self._parsed is None:
            self._parsed = await asyncio.to_thread(_graph_json, await self.body())
        return self._parsed


def _graph_json(body: bytes) -> tuple[Any, int]:
    """`body` parsed, its tasks (the body itself, or its `tasks`) as `TaskSpec`s when all of
    them are valid; otherwise as parsed, for FastAPI to say what is wrong; and how many
    `depends_on` entries its tasks hold."""
    data = json.loads(body)
    tasks = data.get("tasks") if isinstance(data, dict) else data
    if not isinstance(tasks, list):
        return data, 0
    lists = (t.get("depends_on") for t in tasks if isinstance(t, dict))
    edges = sum(len(d) for d in lists if isinstance(d, list))
    try:
        specs = _TASKS.validate_python(tasks)
    except ValidationError:
        return data, edges
    return ({**data, "tasks": specs} if isinstance(data, dict) else specs), edges
