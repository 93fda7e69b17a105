"""Gemini CLI (`@google/gemini-cli`), headless: `gemini -p … --output-format stream-json
--approval-mode yolo --skip-trust`, configured by a private `$HOME/.gemini/settings.json`.

Facts this relies on (measured against 0.61.0, see `tests/agents/test_fake_gemini.py`):
the API key auth must be selected in the settings file, or a base URL selects a gateway auth
that fails headless; the turn limit is the setting `model.maxSessionTurns` (exit 53);
`general.maxAttempts: 1` stops the CLI's own retries (Swarm retries); an API error exits
with the HTTP status & 0xFF (429 → 173, 400 → 144, 500 → 244) and a 429's message says
"Suggested retry after Ns"; without `GEMINI_CLI_NO_RELAUNCH` the CLI runs a second node
process that ignores SIGTERM; on errors it writes a report with the conversation into
`TMPDIR`, so each run gets its own; loop detection ends a run with exit 0 and an `error`
event, which is not a success.

A read-only task runs in `--approval-mode plan`, which works headless: the shell tool is not
offered and `write_file` is refused outside the CLI's own plans folder (in the private
HOME). Gemini has no schema option: a task's `output_schema` reaches it only as words in
the prompt, and the answer is the assistant text streamed after the last tool call.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

from swarm_adapter.runners.base import RunContext, RunResult
from swarm_adapter.runners.cli import AgentCliRunner, CliRun, Observation, as_dict, as_int
from swarm_common.capabilities import KIND_CAPABILITIES
from swarm_common.messages import utcnow
from swarm_common.procs import ProcessResult

__all__ = ["GeminiRunner", "RUNNER"]

_FILE_TOOLS = {"write_file", "replace", "edit"}
_RETRY_AFTER = re.compile(r"retry (?:after|in) (\d+(?:\.\d+)?)\s*s", re.IGNORECASE)
# An API error exits with its HTTP status & 0xFF.
_STATUS_OF_EXIT = {
    (status & 0xFF): status for status in (400, 401, 403, 404, 429, 500, 502, 503, 504)
}
TURN_LIMIT_EXIT = 53
AUTH_EXIT = 41


class GeminiRunner(AgentCliRunner):
    agent: ClassVar[str] = "gemini"
    capabilities: ClassVar[frozenset[str]] = KIND_CAPABILITIES["gemini"]
    package: ClassVar[str] = "@google/gemini-cli"
    binary: ClassVar[str] = "gemini"
    key_env: ClassVar[str] = "GEMINI_API_KEY"
    base_url_env: ClassVar[str] = "GOOGLE_GEMINI_BASE_URL"
    default_base_url: ClassVar[str] = "https://generativelanguage.googleapis.com"

    def command(self, ctx: RunContext, prompt: str, *, readable: list[Path]) -> list[str]:
        return [
            str(self.path),
            "-p",
            prompt,
            "--output-format",
            "stream-json",
            "--approval-mode",
            "plan" if ctx.message.read_only else "yolo",
            "--skip-trust",
            *self.model_option(ctx),
            *(f"--include-directories={folder}" for folder in readable),
        ]

    def configure(self, ctx: RunContext) -> dict[str, str]:
        settings: dict[str, Any] = {
            "security": {
                "auth": {"selectedType": "gemini-api-key"},
                # The agent's own shell commands do not see the key.
                "environmentVariableRedaction": {"enabled": True, "blocked": [self.key_env]},
            },
            "telemetry": {"enabled": False},
            "privacy": {"usageStatisticsEnabled": False},
            "general": {"enableAutoUpdate": False, "maxAttempts": 1},
            "model": {"maxSessionTurns": self.max_turns(ctx)},
        }
        if ctx.message.allowed_tools:
            settings["tools"] = {"core": list(ctx.message.allowed_tools)}
        config = ctx.home_folder(".gemini") / "settings.json"
        config.write_text(json.dumps(settings, indent=2))
        env = {"TMPDIR": str(ctx.home_folder("tmp")), "GEMINI_CLI_NO_RELAUNCH": "true"}
        return {**env, **self.credential_env()}

    def observe(self, event: dict[str, Any], run: CliRun) -> list[Observation]:
        kind = event.get("type")
        if kind == "message":
            if event.get("role") == "assistant" and isinstance(event.get("content"), str):
                run.notes["text"] = run.notes.get("text", "") + event["content"]
            return []
        if kind == "result":  # the text streamed since the last tool call is the answer
            run.answer = run.notes.get("text") or None
        found = _flush_text(run)  # streamed text ends where anything else begins
        if kind == "tool_use":
            found += _tool_use(event)
        elif kind == "tool_result":
            status = str(event.get("status", ""))
            found.append(
                ("tool_result", status, {"status": status, "tool_id": event.get("tool_id")})
            )
        elif kind == "error":
            message = str(event.get("message", ""))
            if "Loop detected" in message:
                run.fail("loop_detected", message)
            found.append(("error", message[:500], {"severity": event.get("severity")}))
        elif kind == "result":
            self._result(event, run)
        elif kind == "init":
            run.said_model(event.get("model"))
            found.append(
                ("init", f"model {event.get('model', '?')}", {"model": event.get("model")})
            )
        return found

    def _result(self, event: dict[str, Any], run: CliRun) -> None:
        run.final = event
        stats = as_dict(event.get("stats"))
        run.set_usage(
            input=as_int(stats.get("input_tokens")),
            cached_input=as_int(stats.get("cached")),
            output=as_int(stats.get("output_tokens")),
        )
        if event.get("status") != "success":
            run.is_error = True
            error = as_dict(event.get("error"))
            run.notes["error_type"] = str(error.get("type", ""))
            run.result_text = str(error.get("message", ""))

    def classify(self, proc: ProcessResult, run: CliRun) -> RunResult:
        if not run.reason and (run.is_error or proc.exit_code in (AUTH_EXIT, TURN_LIMIT_EXIT)):
            self._explain(proc.exit_code, run)
        return super().classify(proc, run)

    def _explain(self, exit_code: int | None, run: CliRun) -> None:
        text = run.result_text
        status = _STATUS_OF_EXIT.get(exit_code) if exit_code not in (None, 0, 1) else None
        if exit_code == TURN_LIMIT_EXIT or run.notes.get("error_type") == "FatalTurnLimitedError":
            run.fail("turn_limit", text)
        elif status == 429 or "RESOURCE_EXHAUSTED" in text or "exceeded your current quota" in text:
            run.fail("rate_limited", text)
            match = _RETRY_AFTER.search(text)
            if match:
                run.retry_at = utcnow() + timedelta(seconds=float(match.group(1)))
        elif (
            status in (401, 403)
            or exit_code == AUTH_EXIT
            or "API_KEY_INVALID" in text
            or "API key not valid" in text
        ):
            run.fail("auth", text)
        elif "fetch failed" in text:
            run.fail("model_unreachable", text)
        elif status is not None and status >= 500:
            run.fail("model_error", text)
        else:
            run.fail("agent_error", text or "the agent reported an error")


def _flush_text(run: CliRun) -> list[Observation]:
    text = run.notes.pop("text", "")
    return [("message", text, {})] if text else []


def _tool_use(event: dict[str, Any]) -> list[Observation]:
    name = str(event.get("tool_name", "?"))
    params = as_dict(event.get("parameters"))
    target = next(
        (
            str(params[k])
            for k in ("file_path", "command", "dir_path", "path", "pattern")
            if isinstance(params.get(k), str)
        ),
        "",
    )
    found = [
        (
            "tool_call",
            f"{name} {target[:200]}".strip(),
            {
                "tool": name,
                "input": {k: (v[:500] if isinstance(v, str) else v) for k, v in params.items()},
            },
        )
    ]
    if name in _FILE_TOOLS and isinstance(params.get("file_path"), str):
        found.append(
            ("file_change", params["file_path"], {"tool": name, "path": params["file_path"]})
        )
    return found


RUNNER = GeminiRunner
