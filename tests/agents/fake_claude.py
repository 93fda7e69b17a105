"""The fake model API of the claude CLI (see `fakeserver.py`): the Anthropic Messages API,
`POST /v1/messages` (streamed as SSE when the request asks for it, else one JSON message)
and `POST /v1/messages/count_tokens`.

Stateless per request: while the conversation holds no `tool_result` block the model calls
the tool the scenario asks for; once it does, it answers the final text. Claude's `Write`
tool wants an absolute `file_path`, so the working directory is read from the system prompt
("Primary working directory: <cwd>") and joined with `scenario.file`.

Structured output (`claude --json-schema`, measured against 2.1.197): the CLI offers the
model a tool `StructuredOutput` whose `input_schema` is the schema; the model answers by
calling it, the CLI checks the input against the schema (an error result when it does not
fit; after five such calls the run ends with `error_max_structured_output_retries`), a
good call ends the run at once (no further request), and the closing `result` event carries
the input as `structured_output`. A model that answers in text is told once, in a synthetic
user message "[structured-output-enforce] You MUST call the StructuredOutput tool…", then
the run ends with the text. An `answer` scenario calls that tool when it is offered and the
answer is a JSON object, else answers the text (again when told); a run is told apart by the
`x-claude-code-session-id` header the CLI sends with each of its requests.
"""

from __future__ import annotations

import asyncio
import json
import posixpath
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from tests.agents.fakeserver import FakeState, Scenario

__all__ = ["RUN_HEADER", "STRUCTURED_OUTPUT", "routes", "working_directory"]

_CWD = re.compile(r"Primary working directory:\s*(\S[^\n]*)")
STRUCTURED_OUTPUT = "StructuredOutput"
"""The tool `claude --json-schema` offers for the structured answer."""
RUN_HEADER = "x-claude-code-session-id"
"""The header that names the run on each of its requests."""
_RATE_LIMIT_KINDS = ("requests", "tokens", "input-tokens", "output-tokens")


def routes(state: FakeState) -> list[BaseRoute]:
    async def messages(request: Request) -> Response:
        body = await _json_body(request)
        state.record(request.url.path, dict(request.headers), body)
        return await _answer(state, body, request.headers.get(RUN_HEADER))

    async def count_tokens(request: Request) -> Response:
        body = await _json_body(request)
        state.record(request.url.path, dict(request.headers), body)
        return JSONResponse({"input_tokens": state.scenario_for("claude").input_tokens})

    return [
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
    ]


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return {"_raw": raw.decode("utf-8", "replace")}


async def _answer(state: FakeState, body: Any, run: str | None) -> Response:
    scenario = state.scenario_for("claude")
    if not isinstance(body, dict):
        return _error(400, "invalid_request_error", "the request body is not a JSON object")
    writes_first = scenario.write_first and not _has_tool_result(body)
    if scenario.mode == "rate_limit" and not writes_first:
        return _rate_limited(scenario)
    if scenario.mode == "auth_error":
        return _error(401, "authentication_error", "invalid x-api-key")
    if scenario.mode == "server_error":
        return _error(500, "api_error", "Internal server error")
    if scenario.mode == "hang":
        while not state.stop.is_set():
            await asyncio.sleep(0.05)
        return _error(529, "overloaded_error", "the fake server is shutting down")
    if scenario.mode == "answer" and body.get("tools"):
        content, stop_reason = _answer_turn(state, body, run)
    elif scenario.mode == "rate_limit":  # `write_first`: work left behind, then the limit
        content, stop_reason = _write_turn(scenario, body)
    else:
        content, stop_reason = _turn(scenario, body)
    model = str(body.get("model") or "claude-fake")
    if body.get("stream"):
        return StreamingResponse(
            _sse(scenario, model, content, stop_reason),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "request-id": _id("req_")},
        )
    message = _message(scenario, model, content, stop_reason)
    message["usage"]["output_tokens"] = scenario.output_tokens
    return JSONResponse(message, headers={"request-id": _id("req_")})


def _turn(scenario: Scenario, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """The content blocks and stop reason of the model's next message. A request that offers
    no tools (a side call such as the session title, made without
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC) always gets the text."""
    if not body.get("tools"):
        return [{"type": "text", "text": scenario.reply}], "end_turn"
    if scenario.mode == "loop_tools":
        return [_tool_use("Bash", {"command": "true", "description": "Do nothing"})], "tool_use"
    reads = 1 if scenario.read_first else 0
    if reads and _tool_result_count(body) == 0:
        cwd = working_directory(body)
        path = posixpath.join(cwd, scenario.read_first) if cwd else scenario.read_first
        return [_tool_use("Read", {"file_path": path})], "tool_use"
    if scenario.mode == "write_file" and _tool_result_count(body) == reads:
        cwd = working_directory(body)
        path = posixpath.join(cwd, scenario.file) if cwd else scenario.file
        return [_tool_use("Write", {"file_path": path, "content": scenario.content})], "tool_use"
    return [{"type": "text", "text": scenario.reply}], "end_turn"


def _answer_turn(
    state: FakeState, body: dict[str, Any], run: str | None
) -> tuple[list[dict[str, Any]], str]:
    """`answer`: the write first (if asked), then the run's answer, as a `StructuredOutput`
    call when the CLI offers that tool and the answer is a JSON object; once the CLI has
    taken the structured answer, a closing text."""
    scenario = state.scenario_for("claude")
    if scenario.write_first and not _has_tool_result(body):
        cwd = working_directory(body)
        path = posixpath.join(cwd, scenario.file) if cwd else scenario.file
        return [_tool_use("Write", {"file_path": path, "content": scenario.content})], "tool_use"
    if _structured_output_taken(body):
        return [{"type": "text", "text": scenario.reply}], "end_turn"
    answer = state.answer(run)
    if _offers(body, STRUCTURED_OUTPUT):
        try:
            parsed = json.loads(answer)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return [_tool_use(STRUCTURED_OUTPUT, parsed)], "tool_use"
    return [{"type": "text", "text": answer}], "end_turn"


def _write_turn(scenario: Scenario, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """`rate_limit` with `write_first`: the model says `reply`, then writes the file."""
    cwd = working_directory(body)
    path = posixpath.join(cwd, scenario.file) if cwd else scenario.file
    write = _tool_use("Write", {"file_path": path, "content": scenario.content})
    return [{"type": "text", "text": scenario.reply}, write], "tool_use"


def _offers(body: dict[str, Any], tool: str) -> bool:
    tools = body.get("tools")
    return isinstance(tools, list) and any(
        isinstance(t, dict) and t.get("name") == tool for t in tools
    )


def _structured_output_taken(body: dict[str, Any]) -> bool:
    """Whether the conversation holds a `StructuredOutput` call that the CLI accepted (a
    result that is no error)."""
    calls: set[str] = set()
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        for block in content if isinstance(content, list) else []:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "tool_use" and block.get("name") == STRUCTURED_OUTPUT:
                calls.add(str(block.get("id")))
            elif (
                block.get("type") == "tool_result"
                and block.get("tool_use_id") in calls
                and not block.get("is_error")
            ):
                return True
    return False


def working_directory(body: dict[str, Any]) -> str | None:
    """The CLI's working directory, from "Primary working directory: <cwd>" in the system
    prompt (or, failing that, anywhere in the messages)."""
    for text in _texts(body.get("system")):
        if match := _CWD.search(text):
            return match.group(1).strip()
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            for text in _texts(message.get("content")):
                if match := _CWD.search(text):
                    return match.group(1).strip()
    return None


def _texts(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for block in value:
            if isinstance(block, str):
                yield block
            elif isinstance(block, dict) and isinstance(block.get("text"), str):
                yield block["text"]


def _has_tool_result(body: dict[str, Any]) -> bool:
    for message in body.get("messages") or []:
        if not isinstance(message, dict) or not isinstance(message.get("content"), list):
            continue
        for block in message["content"]:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                return True
    return False


def _tool_result_count(body: dict[str, Any]) -> int:
    return sum(
        1
        for message in body.get("messages") or []
        if isinstance(message, dict) and isinstance(message.get("content"), list)
        for block in message["content"]
        if isinstance(block, dict) and block.get("type") == "tool_result"
    )


def _id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def _tool_use(name: str, tool_input: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": _id("toolu_"), "name": name, "input": tool_input}


def _usage(scenario: Scenario, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": scenario.input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": scenario.cached_tokens,
        "output_tokens": output_tokens,
    }


def _message(
    scenario: Scenario, model: str, content: list[dict[str, Any]], stop_reason: str | None
) -> dict[str, Any]:
    return {
        "id": _id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": _usage(scenario, 1),
    }


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


async def _sse(
    scenario: Scenario, model: str, content: list[dict[str, Any]], stop_reason: str
) -> AsyncIterator[str]:
    start = _message(scenario, model, [], None)
    yield _event("message_start", {"type": "message_start", "message": start})
    yield _event("ping", {"type": "ping"})
    for index, block in enumerate(content):
        if block["type"] == "tool_use":
            opening = {**block, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        else:
            opening = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": block["text"]}
        yield _event(
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": opening},
        )
        yield _event(
            "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
        )
        yield _event("content_block_stop", {"type": "content_block_stop", "index": index})
    yield _event(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": _usage(scenario, scenario.output_tokens),
        },
    )
    yield _event("message_stop", {"type": "message_stop"})


def _error(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> Response:
    request_id = _id("req_")
    return JSONResponse(
        {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id},
        status_code=status,
        headers={"request-id": request_id, **(headers or {})},
    )


def _rate_limited(scenario: Scenario) -> Response:
    """429 as the Anthropic API sends it: `retry-after` in seconds and, per limit, the
    `anthropic-ratelimit-<kind>-limit/-remaining/-reset` headers (reset as RFC 3339)."""
    reset = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=scenario.reset_after_s)
    stamp = reset.strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = {"retry-after": str(scenario.reset_after_s)}
    for kind in _RATE_LIMIT_KINDS:
        limit = "50" if kind == "requests" else "40000"
        remaining = "0" if kind == "requests" else limit
        headers[f"anthropic-ratelimit-{kind}-limit"] = limit
        headers[f"anthropic-ratelimit-{kind}-remaining"] = remaining
        headers[f"anthropic-ratelimit-{kind}-reset"] = stamp
    message = (
        "This request would exceed the rate limit for your organization of 50 requests per minute."
    )
    return _error(429, "rate_limit_error", message, headers)
