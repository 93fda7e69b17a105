"""The fake model API of the gemini CLI (see `fakeserver.py`): Google's Generative Language
API (`/v1beta`) as `@google/gemini-cli` 0.61.0 calls it with `GEMINI_API_KEY` and
`GOOGLE_GEMINI_BASE_URL`.

The CLI's only call in a headless run is `POST /v1beta/models/<model>:streamGenerateContent
?alt=sse`; the answer is server-sent events, each `data: <GenerateContentResponse JSON>`.
`generateContent`, `countTokens`, `embedContent` and the model listing are answered too, so
the CLI never waits on a call this module does not know.

Stateless per request: while the conversation (`contents`) holds no `functionResponse` part
the model calls a tool, once it does it answers the final text. The file-writing tool is
`write_file` with `{file_path, content}`; `file_path` is made absolute against the first
workspace directory the CLI lists in its first user message ("Workspace Directories").

Errors are shaped as Google sends them (`{"error": {"code", "message", "status",
"details"}}`): 429 `RESOURCE_EXHAUSTED` with a `RetryInfo` detail, 400 `INVALID_ARGUMENT`
with reason `API_KEY_INVALID` (what Google answers for a bad key), 500 `INTERNAL`.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from tests.agents.fakeserver import FakeState, Scenario

__all__ = ["AUTH_ERROR_STATUS", "google_error", "routes", "workspace_of"]

# Google answers an invalid API key with 400 INVALID_ARGUMENT (reason API_KEY_INVALID).
AUTH_ERROR_STATUS = 400

_MODELS = ["gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite"]
_WORKSPACE = re.compile(r"Workspace Directories:\**\s*\n\s*-\s*(\S[^\n]*)")


def workspace_of(body: dict[str, Any]) -> str | None:
    """The first workspace directory listed in the conversation's user messages."""
    for content in body.get("contents") or []:
        if content.get("role") != "user":
            continue
        for part in content.get("parts") or []:
            found = _WORKSPACE.search(part.get("text") or "")
            if found:
                return found.group(1).strip()
    return None


def _tool_results(body: dict[str, Any]) -> int:
    """How many `functionResponse` parts the conversation holds."""
    return sum(
        1
        for content in body.get("contents") or []
        for part in content.get("parts") or []
        if "functionResponse" in part
    )


def _usage(scenario: Scenario) -> dict[str, int]:
    # Gemini's promptTokenCount includes the cached tokens (cachedContentTokenCount).
    return {
        "promptTokenCount": scenario.input_tokens,
        "cachedContentTokenCount": scenario.cached_tokens,
        "candidatesTokenCount": scenario.output_tokens,
        "totalTokenCount": scenario.input_tokens + scenario.output_tokens,
    }


def _response(model: str, parts: list[dict[str, Any]], scenario: Scenario) -> dict[str, Any]:
    return {
        "candidates": [
            {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
        ],
        "usageMetadata": _usage(scenario),
        "modelVersion": model,
        "responseId": "fake-gemini-response",
    }


def _join(workspace: str | None, file: str) -> str:
    if workspace is None or file.startswith("/"):
        return file
    return workspace.rstrip("/") + "/" + file


def _model_parts(body: dict[str, Any], state: FakeState) -> list[dict[str, Any]]:
    """What the model says for this conversation under `state.scenario` (a successful
    mode). The CLI sends no id of its run, and never asks for a final answer twice in one
    run: each answer given counts as a run of its own (`FakeState.answer(None)`)."""
    scenario = state.scenario_for("gemini")
    results = _tool_results(body)
    if scenario.mode == "loop_tools":
        # A harmless listing, its arguments new each turn so the CLI's loop detection
        # (identical calls in a row) never ends the run before its turn limit does.
        workspace = workspace_of(body) or "."
        args = {"dir_path": workspace, "ignore": [f"no-such-file-{results}"]}
        return [{"functionCall": {"name": "list_directory", "args": args}}]
    reads = 1 if scenario.read_first else 0
    if reads and results == 0:
        path = _join(workspace_of(body), str(scenario.read_first))
        return [{"functionCall": {"name": "read_file", "args": {"file_path": path}}}]
    writes = scenario.mode == "write_file" or (scenario.mode == "answer" and scenario.write_first)
    if writes and results == reads:
        path = _join(workspace_of(body), scenario.file)
        args = {"file_path": path, "content": scenario.content}
        return [{"functionCall": {"name": "write_file", "args": args}}]
    if scenario.mode == "answer":
        return [{"text": state.answer(None)}]
    return [{"text": scenario.reply}]


def google_error(code: int, status: str, message: str, details: list[Any]) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status, "details": details}}


def _error_response(scenario: Scenario) -> Response | None:
    if scenario.mode == "rate_limit":
        delay = f"{scenario.reset_after_s}s"
        body = google_error(
            429,
            "RESOURCE_EXHAUSTED",
            "You exceeded your current quota, please check your plan and billing details. "
            f"Please retry in {delay}.",
            [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        {
                            "quotaMetric": "generativelanguage.googleapis.com/"
                            "generate_content_paid_tier_input_token_count",
                            "quotaId": "GenerateContentPaidTierInputTokensPerModelPerMinute",
                            "quotaValue": "1000000",
                        }
                    ],
                },
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay},
            ],
        )
        headers = {"Retry-After": str(scenario.reset_after_s)}
        return JSONResponse(body, status_code=429, headers=headers)
    if scenario.mode == "auth_error":
        message = "API key not valid. Please pass a valid API key."
        status = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED"}.get(
            AUTH_ERROR_STATUS, "PERMISSION_DENIED"
        )
        body = google_error(
            AUTH_ERROR_STATUS,
            status,
            message,
            [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                },
                {
                    "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                    "locale": "en-US",
                    "message": message,
                },
            ],
        )
        return JSONResponse(body, status_code=AUTH_ERROR_STATUS)
    if scenario.mode == "server_error":
        body = google_error(500, "INTERNAL", "An internal error has occurred.", [])
        return JSONResponse(body, status_code=500)
    return None


async def _hang(state: FakeState) -> Response:
    while not state.stop.is_set():
        await asyncio.sleep(0.05)
    return JSONResponse(google_error(503, "UNAVAILABLE", "The server is stopping.", []), 503)


def _sse(payload: dict[str, Any]) -> StreamingResponse:
    async def events() -> AsyncIterator[str]:
        yield f"data: {json.dumps(payload)}\r\n\r\n"

    return StreamingResponse(events(), media_type="text/event-stream")


def _model_info(name: str) -> dict[str, Any]:
    return {
        "name": f"models/{name}",
        "baseModelId": name,
        "version": "fake",
        "displayName": name,
        "inputTokenLimit": 1048576,
        "outputTokenLimit": 65536,
        "supportedGenerationMethods": ["generateContent", "countTokens"],
    }


def routes(state: FakeState) -> list[BaseRoute]:
    async def record(request: Request) -> Any:
        raw = await request.body()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        state.record(request.url.path, dict(request.headers), body)
        return body

    async def list_models(request: Request) -> Response:
        await record(request)
        return JSONResponse({"models": [_model_info(name) for name in _MODELS]})

    async def model(request: Request) -> Response:
        body = await record(request)
        name, _, method = request.path_params["name"].partition(":")
        if request.method == "GET":
            return JSONResponse(_model_info(name))
        scenario = state.scenario_for("gemini")
        if scenario.mode == "hang":
            return await _hang(state)
        error = _error_response(scenario)
        if error is not None:
            return error
        if method == "countTokens":
            return JSONResponse({"totalTokens": scenario.input_tokens})
        if method == "embedContent":
            return JSONResponse({"embedding": {"values": [0.0] * 8}})
        if method not in ("streamGenerateContent", "generateContent"):
            message = f"Method {method!r} is not known to the fake Gemini API."
            return JSONResponse(google_error(404, "NOT_FOUND", message, []), 404)
        parts = _model_parts(body or {}, state)
        payload = _response(name, parts, scenario)
        if method == "generateContent":
            return JSONResponse(payload)
        return _sse(payload)

    return [
        Route("/v1beta/models", list_models, methods=["GET"]),
        Route("/v1beta/models/{name:path}", model, methods=["GET", "POST"]),
    ]
