"""Claude Code (`@anthropic-ai/claude-code`), headless: `claude -p … --output-format
stream-json --verbose`, configured under a private `CLAUDE_CONFIG_DIR`.

Facts this relies on (measured against 2.1.197, see `tests/agents/test_fake_claude.py`):
the closing `result` event carries the run's total `usage`, `total_cost_usd` and
`num_turns`; each `assistant` event carries its model call's `usage` as the call began (its
input, one output token: the one way to follow a run's spend as it goes); an API failure
still says `"subtype": "success"`, so the outcome comes from the exit code, `is_error` and
`api_error_status`; a turn limit is `subtype: error_max_turns`.
With `CLAUDE_CODE_MAX_RETRIES=0` a 429 fails at once (Swarm schedules the retry itself).

Structured output (`--json-schema`, see `tests/agents/test_read_only_answers.py`): the CLI
offers the model a `StructuredOutput` tool whose input schema is the task's schema and
checks the call against it (a mismatch goes back to the model as a tool error); a good call
ends the run, and the closing `result` carries the input as `structured_output` (its
`result` text is that JSON too). A model that answers in text is told once to call the
tool, then the run ends as a success with the text and no `structured_output`; five calls
that do not fit end it with `subtype: error_max_structured_output_retries` (`invalid_answer`).
`--allowedTools` only pre-approves tools: every built-in tool is still offered, hence
`--tools` for a read-only run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from swarm_adapter.runners.base import RunContext
from swarm_adapter.runners.cli import AgentCliRunner, CliRun, Observation, as_dict, as_int
from swarm_common.capabilities import KIND_CAPABILITIES

__all__ = ["ClaudeRunner", "RUNNER"]

DEFAULT_TOOLS = ("Bash", "Edit", "MultiEdit", "Write", "Read", "Glob", "Grep")
READ_ONLY_TOOLS = ("Read", "Glob", "Grep")
_FILE_TOOLS = {"Write", "Edit", "MultiEdit", "NotebookEdit"}
_ERRORS = {
    "rate_limit": "rate_limited",
    "authentication_failed": "auth",
    "billing_error": "auth",
    "server_error": "model_error",
}


class ClaudeRunner(AgentCliRunner):
    agent: ClassVar[str] = "claude"
    capabilities: ClassVar[frozenset[str]] = KIND_CAPABILITIES["claude"]
    package: ClassVar[str] = "@anthropic-ai/claude-code"
    binary: ClassVar[str] = "claude"
    key_env: ClassVar[str] = "ANTHROPIC_API_KEY"
    base_url_env: ClassVar[str] = "ANTHROPIC_BASE_URL"
    default_base_url: ClassVar[str] = "https://api.anthropic.com"
    api_timeout_ms: ClassVar[int] = 300_000

    def command(self, ctx: RunContext, prompt: str, *, readable: list[Path]) -> list[str]:
        read_only = ctx.message.read_only
        tools = ctx.message.allowed_tools or list(READ_ONLY_TOOLS if read_only else DEFAULT_TOOLS)
        argv = [
            str(self.path),
            "-p",
            prompt,
            "--output-format",
            "stream-json",
            "--verbose",
            f"--max-turns={self.max_turns(ctx)}",
        ]
        if read_only:  # only these tools are offered; any other would be denied, not asked
            argv += ["--permission-mode", "dontAsk", "--tools", *_names(tools)]
        else:
            argv += ["--permission-mode", "acceptEdits"]
        argv += ["--allowedTools", *tools, *self.model_option(ctx)]
        if ctx.message.output_schema is not None:
            argv.append(f"--json-schema={json.dumps(ctx.message.output_schema)}")
        return [*argv, *(f"--add-dir={folder}" for folder in readable)]

    def configure(self, ctx: RunContext) -> dict[str, str]:
        env = {
            "CLAUDE_CONFIG_DIR": str(ctx.home_folder(".claude")),
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "CLAUDE_CODE_MAX_RETRIES": "0",
            "API_TIMEOUT_MS": str(self.api_timeout_ms),
        }
        return {**env, **self.credential_env()}

    def observe(self, event: dict[str, Any], run: CliRun) -> list[Observation]:
        kind = event.get("type")
        if kind == "assistant":
            return self._assistant(event, run)
        if kind == "user":
            return _tool_results(event)
        if kind == "result":
            self._result(event, run)
            return []
        if kind == "system" and event.get("subtype") == "init":
            run.said_model(event.get("model"))
            return [
                (
                    "init",
                    f"model {event.get('model', '?')}",
                    {"model": event.get("model"), "session_id": event.get("session_id")},
                )
            ]
        return []

    def _assistant(self, event: dict[str, Any], run: CliRun) -> list[Observation]:
        error = event.get("error")
        if isinstance(error, str):  # a hint; the closing result explains better
            run.notes["error"] = error
        found: list[Observation] = []
        _streamed_usage(as_dict(event.get("message")), run)
        content = as_dict(event.get("message")).get("content") or []
        for block in content if isinstance(content, list) else []:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and block.get("text"):
                found.append(("message", str(block["text"]), {}))
            elif block.get("type") == "tool_use":
                name = str(block.get("name", "?"))
                tool_input = as_dict(block.get("input"))
                found.append(
                    (
                        "tool_call",
                        f"{name} {_brief(tool_input)}",
                        {"tool": name, "input": _clip(tool_input)},
                    )
                )
                path = tool_input.get("file_path") if tool_input else None
                if name in _FILE_TOOLS and isinstance(path, str):
                    found.append(("file_change", path, {"tool": name, "path": path}))
        return found

    def _result(self, event: dict[str, Any], run: CliRun) -> None:
        run.final = event
        run.is_error = bool(event.get("is_error"))
        run.set_usage(**_tokens(as_dict(event.get("usage"))))
        cost = event.get("total_cost_usd")
        if isinstance(cost, int | float):
            run.cost_usd = float(cost)
        if isinstance(event.get("num_turns"), int):
            run.turns = event["num_turns"]
        run.result_text = str(event.get("result") or "")
        if run.is_error:
            self._explain(event, run)
        elif "structured_output" in event:
            run.answer = json.dumps(event["structured_output"], ensure_ascii=False)
        elif isinstance(event.get("result"), str):
            run.answer = event["result"]

    def _explain(self, event: dict[str, Any], run: CliRun) -> None:
        text = run.result_text or "; ".join(str(e) for e in event.get("errors") or [])
        status = event.get("api_error_status")
        if event.get("subtype") == "error_max_turns" or event.get("terminal_reason") == "max_turns":
            run.fail("turn_limit", text or "reached the turn limit")
        elif event.get("subtype") == "error_max_structured_output_retries":
            run.fail("invalid_answer", text or "the answer did not fit the output schema")
        elif status == 429:
            run.fail("rate_limited", text)
        elif status in (401, 403) or "Invalid API key" in text or "Not logged in" in text:
            run.fail("auth", text)
        elif "Unable to connect" in text or "timed out" in text:
            run.fail("model_unreachable", text)
        elif isinstance(status, int) and status >= 500:
            run.fail("model_error", text)
        elif run.notes.get("error") in _ERRORS:
            run.fail(_ERRORS[run.notes["error"]], text)
        else:
            run.fail("agent_error", text or "the agent reported an error")


def _tokens(usage: dict[str, Any]) -> dict[str, int]:
    """Anthropic's usage as Swarm counts it: `input` holds cache reads and writes too."""
    fresh = as_int(usage.get("input_tokens"))
    cached = as_int(usage.get("cache_read_input_tokens"))
    created = as_int(usage.get("cache_creation_input_tokens"))
    return {
        "input": fresh + cached + created,
        "cached_input": cached,
        "output": as_int(usage.get("output_tokens")),
    }


MAX_CALLS_COUNTED = 100_000
"""Model calls whose streamed usage a run sums (their ids are kept to count each once)."""


def _streamed_usage(message: dict[str, Any], run: CliRun) -> None:
    """Each model call's usage as the run goes (for the task's spend cap): its input, and
    what it has said of its output then (little: the rest comes with the closing `result`,
    whose totals replace these sums). The CLI repeats a call's message for each of its
    content blocks: counted once, by the message's id."""
    usage = as_dict(message.get("usage"))
    ident = message.get("id")
    seen: set[str] = run.notes.setdefault("usage_of", set())
    if not usage or not isinstance(ident, str) or ident in seen or run.final is not None:
        return
    if len(seen) < MAX_CALLS_COUNTED:
        seen.add(ident)
        run.add_usage(**_tokens(usage))


def _names(tools: list[str]) -> list[str]:
    """The tool names of `--allowedTools` entries, for `--tools` (`Bash(git log:*)` is
    `Bash`), each once."""
    return list(dict.fromkeys(tool.split("(", 1)[0] for tool in tools))


def _tool_results(event: dict[str, Any]) -> list[Observation]:
    content = as_dict(event.get("message")).get("content") or []
    found: list[Observation] = []
    for block in content if isinstance(content, list) else []:
        if isinstance(block, dict) and block.get("type") == "tool_result":
            body = block.get("content")
            text = body if isinstance(body, str) else str(body)
            found.append(("tool_result", text[:500], {"is_error": bool(block.get("is_error"))}))
    return found


def _brief(tool_input: dict[str, Any]) -> str:
    for key in ("file_path", "command", "path", "pattern", "url"):
        if isinstance(tool_input.get(key), str):
            return str(tool_input[key])[:200]
    return ""


def _clip(value: dict[str, Any], limit: int = 500) -> dict[str, Any]:
    return {
        k: (v[:limit] + "…" if isinstance(v, str) and len(v) > limit else v)
        for k, v in value.items()
    }


RUNNER = ClaudeRunner
