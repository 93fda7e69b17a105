"""The fake model API of the codex CLI (see `fakeserver.py`): the OpenAI Responses API,
`POST /v1/responses`, streamed as server-sent events.

Point the CLI at it with a provider whose `base_url` is `<server.url>/v1` and
`wire_api="responses"` (see `tests/agents/test_fake_codex.py` for a full, offline setup).

Stateless per request: while the request's `input` holds no tool result
(`function_call_output` / `custom_tool_call_output`) a `write_file` scenario answers with its
tool call, once it holds one with the final text (`scenario.reply`; in an `answer` scenario
the run's answer, the run named by the `session-id` header). With `--output-schema` the
request's `text.format` is `{"type": "json_schema", "strict": true, "schema": …, "name":
"codex_output_schema"}`; the answer is plain text either way. The SSE sequence is
`response.created`, `response.output_item.added`, (`response.output_text.delta`),
`response.output_item.done`, `response.completed` whose `usage` carries the scenario's
`input_tokens`, `input_tokens_details.cached_tokens` and `output_tokens`. Codex sums the usage
of every request of a turn into its `turn.completed` event.

Two module switches (tests set them with `monkeypatch.setattr`):

- `WRITE_TOOL`: how `write_file` writes. `"apply_patch"` (default) calls Codex's freeform
  `apply_patch` tool with an `*** Add File:` patch (shows as a `file_change` item);
  `"exec_command"` calls the shell tool with a `printf` command (a `command_execution`
  item). `apply_patch` is used only if the request offers it and the content ends with a
  newline (a patch cannot express a missing final newline); otherwise `exec_command`.
- `RATE_LIMIT_STYLE`: `"api"` (default) answers 429 the way the OpenAI API does for API keys
  (`rate_limit_exceeded`, `retry-after` and `x-ratelimit-*` headers); `"chatgpt"` the way
  the ChatGPT backend does (`usage_limit_reached` with `resets_at`), the only form for which
  Codex prints a reset time ("try again at 3:36 PM").
"""

from __future__ import annotations

import asyncio
import json
import shlex
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from tests.agents.fakeserver import FakeState, Scenario

__all__ = [
    "MODEL",
    "PATH",
    "RATE_LIMIT_STYLE",
    "RUN_HEADER",
    "TOOL_OUTPUT_TYPES",
    "WRITE_TOOL",
    "add_file_patch",
    "routes",
    "shell_write_command",
    "tool_outputs",
]

PATH = "/v1/responses"
MODEL = "gpt-5.5"
TOOL_OUTPUT_TYPES = frozenset({"function_call_output", "custom_tool_call_output"})
RUN_HEADER = "session-id"
"""The header that names the run (its thread) on each request of it."""

WRITE_TOOL: Literal["apply_patch", "exec_command"] = "apply_patch"
RATE_LIMIT_STYLE: Literal["api", "chatgpt"] = "api"


def routes(state: FakeState) -> list[BaseRoute]:
    async def responses(request: Request) -> Response:
        raw = await request.body()
        try:
            body: Any = json.loads(raw)
        except ValueError:  # e.g. a zstd-compressed body: recorded as text, no tool output
            body = raw.decode("utf-8", "replace")
        state.record(request.url.path, dict(request.headers), body)
        return await _answer(state, body, request.headers.get(RUN_HEADER))

    return [Route(PATH, responses, methods=["POST"])]


def tool_outputs(body: Any) -> list[dict[str, Any]]:
    """The tool results in a Responses request's `input`."""
    items = body.get("input") if isinstance(body, dict) else None
    if not isinstance(items, list):
        return []
    return [i for i in items if isinstance(i, dict) and i.get("type") in TOOL_OUTPUT_TYPES]


def shell_write_command(scenario: Scenario) -> str:
    """A shell command that writes `scenario.content` to `scenario.file`, byte for byte."""
    return f"printf '%s' {shlex.quote(scenario.content)} > {shlex.quote(scenario.file)}"


def add_file_patch(scenario: Scenario) -> str:
    """An `apply_patch` patch that creates `scenario.file` holding `scenario.content`."""
    added = "".join(f"+{line}\n" for line in scenario.content.splitlines())
    return f"*** Begin Patch\n*** Add File: {scenario.file}\n{added}*** End Patch"


async def _answer(state: FakeState, body: Any, run: str | None) -> Response:
    scenario = state.scenario_for("codex")
    mode = scenario.mode
    if mode == "rate_limit":
        return _rate_limited(scenario)
    if mode == "auth_error":
        return _error(
            401,
            "Incorrect API key provided: sk-test-****. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            "invalid_api_key",
        )
    if mode == "server_error":
        return _error(
            500,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
        )
    if mode == "hang":  # no status line, no headers: the CLI waits for them
        while not state.stop.is_set():
            await asyncio.sleep(0.05)
        return _error(503, "The fake model server is shutting down.", "server_error", None)

    done = len(tool_outputs(body))
    reads = 1 if scenario.read_first else 0
    if reads and done == 0:
        read = {"cmd": f"cat {shlex.quote(str(scenario.read_first))}"}
        return _stream(scenario, [_function_call("exec_command", read, 0)])
    if mode == "loop_tools":
        return _stream(scenario, [_function_call("exec_command", {"cmd": "true"}, done)])
    if (mode == "write_file" or (mode == "answer" and scenario.write_first)) and done == reads:
        return _stream(scenario, [_write_call(scenario, body)])
    if mode == "answer":
        return _stream(scenario, [_message(state.answer(run))])
    return _stream(scenario, [_message(scenario.reply)])


def _offers_apply_patch(body: Any) -> bool:
    tools = body.get("tools") if isinstance(body, dict) else None
    return isinstance(tools, list) and any(
        isinstance(t, dict) and t.get("name") == "apply_patch" for t in tools
    )


def _write_call(scenario: Scenario, body: Any) -> dict[str, Any]:
    content = scenario.content
    if WRITE_TOOL == "apply_patch" and content.endswith("\n") and _offers_apply_patch(body):
        return {
            "type": "custom_tool_call",
            "id": f"ctc_{uuid.uuid4().hex[:12]}",
            "call_id": f"call_{uuid.uuid4().hex[:12]}",
            "name": "apply_patch",
            "input": add_file_patch(scenario),
            "status": "completed",
        }
    return _function_call("exec_command", {"cmd": shell_write_command(scenario)}, 0)


def _function_call(name: str, arguments: dict[str, Any], index: int) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": f"fc_{index}_{uuid.uuid4().hex[:12]}",
        "call_id": f"call_{index}_{uuid.uuid4().hex[:12]}",
        "name": name,
        "arguments": json.dumps(arguments),
        "status": "completed",
    }


def _message(text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": f"msg_{uuid.uuid4().hex[:12]}",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def _usage(scenario: Scenario) -> dict[str, Any]:
    return {
        "input_tokens": scenario.input_tokens,
        "input_tokens_details": {"cached_tokens": scenario.cached_tokens},
        "output_tokens": scenario.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": scenario.input_tokens + scenario.output_tokens,
    }


def _sse(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


def _stream(scenario: Scenario, items: list[dict[str, Any]]) -> StreamingResponse:
    response = {
        "id": f"resp_{uuid.uuid4().hex[:12]}",
        "object": "response",
        "created_at": int(time.time()),
        "model": MODEL,
    }

    async def events() -> AsyncIterator[bytes]:
        seq = 0

        def event(kind: str, **fields: Any) -> bytes:
            nonlocal seq
            seq += 1
            return _sse({"type": kind, "sequence_number": seq, **fields})

        yield event(
            "response.created", response={**response, "status": "in_progress", "output": []}
        )
        for index, item in enumerate(items):
            if item["type"] == "message":
                yield event(
                    "response.output_item.added",
                    output_index=index,
                    item={**item, "status": "in_progress", "content": []},
                )
                yield event(
                    "response.output_text.delta",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    delta=item["content"][0]["text"],
                )
            else:
                yield event("response.output_item.added", output_index=index, item=item)
            yield event("response.output_item.done", output_index=index, item=item)
        yield event(
            "response.completed",
            response={
                **response,
                "status": "completed",
                "output": items,
                "usage": _usage(scenario),
            },
        )

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"cache-control": "no-cache"}
    )


def _error(
    status: int,
    message: str,
    kind: str,
    code: str | None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    error = {"message": message, "type": kind, "param": None, "code": code, **extra}
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def _rate_limited(scenario: Scenario) -> JSONResponse:
    reset = scenario.reset_after_s
    if RATE_LIMIT_STYLE == "chatgpt":
        resets_at = int(time.time()) + reset
        return _error(
            429,
            "The usage limit has been reached",
            "usage_limit_reached",
            None,
            {
                "x-codex-primary-used-percent": "100",
                "x-codex-primary-window-minutes": "300",
                "x-codex-primary-reset-at": str(resets_at),
                "x-codex-primary-reset-after-seconds": str(reset),
            },
            plan_type="plus",
            resets_at=resets_at,
            resets_in_seconds=reset,
        )
    headers = {
        "retry-after": str(reset),
        "retry-after-ms": str(reset * 1000),
        "x-ratelimit-limit-requests": "500",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": f"{reset}s",
        "x-ratelimit-limit-tokens": "30000",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": f"{reset}s",
    }
    return _error(
        429,
        f"Rate limit reached for {MODEL} on requests per min (RPM): Limit 500, Used 500, "
        f"Requested 1. Please try again in {reset}s.",
        "requests",
        "rate_limit_exceeded",
        headers,
    )
