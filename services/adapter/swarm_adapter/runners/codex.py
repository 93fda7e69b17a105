"""Codex CLI (`@openai/codex`), headless: `codex exec --json … --sandbox workspace-write`,
with a model provider built from the adapter's `OPENAI_API_KEY` / `OPENAI_BASE_URL` and a
private `CODEX_HOME`.

Facts this relies on (measured against 0.169.0, see `tests/agents/test_fake_codex.py`):
Codex has no turn limit, so Swarm counts its tool calls and stops it (`enforce_turns`); a
run that fails says so with `turn.failed` and exit 1; with its default settings an
unreachable server is retried forever, the shell snapshot copies the environment (key
included) into `CODEX_HOME`, and the agent's commands see the key, hence the configuration
below; its sandbox lets the agent write `/tmp`, so the agent gets a private temporary folder
instead; `--output-schema` is passed through to the model (not checked by Codex): the
request's `text.format` is `{"type": "json_schema", "strict": true, "schema": <schema>,
"name": "codex_output_schema"}`, and the answer is the text of the last `agent_message`.
A read-only task runs in Codex's `read-only` sandbox.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from swarm_adapter.runners.base import RunContext
from swarm_adapter.runners.cli import AgentCliRunner, CliRun, Observation, as_dict, as_int
from swarm_common.capabilities import KIND_CAPABILITIES

__all__ = ["CodexRunner", "RUNNER"]

PROVIDER = "swarm"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
CONFIG_TOML = """\
check_for_update_on_startup = false

[analytics]
enabled = false

[features]
plugins = false
shell_snapshot = false
unbounded_connection_retries = false

[shell_environment_policy]
ignore_default_excludes = false
"""
_TOOL_ITEMS = {"command_execution", "file_change", "mcp_tool_call", "web_search"}
_TRY_AGAIN = re.compile(r"try again at (\d{1,2}):(\d{2})\s*([AP]M)?", re.IGNORECASE)


class CodexRunner(AgentCliRunner):
    agent: ClassVar[str] = "codex"
    capabilities: ClassVar[frozenset[str]] = KIND_CAPABILITIES["codex"]
    package: ClassVar[str] = "@openai/codex"
    binary: ClassVar[str] = "codex"
    key_env: ClassVar[str] = "OPENAI_API_KEY"
    base_url_env: ClassVar[str] = "OPENAI_BASE_URL"
    default_base_url: ClassVar[str] = DEFAULT_BASE_URL
    enforce_turns: ClassVar[bool] = True
    stream_idle_timeout_ms: ClassVar[int] = 300_000

    def command(self, ctx: RunContext, prompt: str, *, readable: list[Path]) -> list[str]:
        base_url = self.credentials.base_url or DEFAULT_BASE_URL
        provider = (
            f'{{name="Swarm",base_url={json.dumps(base_url)},env_key="{self.key_env}",'
            f'wire_api="responses",request_max_retries=0,stream_max_retries=0,'
            f"stream_idle_timeout_ms={self.stream_idle_timeout_ms}}}"
        )
        tmp = ctx.home / "tmp"
        argv = [
            str(self.path),
            "exec",
            "--json",
            "--skip-git-repo-check",
            "--ephemeral",
            "-C",
            str(ctx.worktree),
            "-c",
            f"model_provider={PROVIDER}",
            "-c",
            f"model_providers.{PROVIDER}={provider}",
            *self.model_option(ctx),
        ]
        if ctx.message.read_only:
            argv += ["--sandbox", "read-only"]
        else:
            argv += [
                "--sandbox",
                "workspace-write",
                "-c",
                "sandbox_workspace_write.exclude_slash_tmp=true",
                "-c",
                f"sandbox_workspace_write.writable_roots=[{json.dumps(str(tmp))}]",
            ]
        if ctx.message.output_schema is not None:
            schema = ctx.home / "output-schema.json"
            schema.write_text(json.dumps(ctx.message.output_schema))
            argv += ["--output-schema", str(schema)]
        return [*argv, prompt]

    def configure(self, ctx: RunContext) -> dict[str, str]:
        codex_home = ctx.home_folder(".codex")
        (codex_home / "config.toml").write_text(CONFIG_TOML)
        # The base URL goes into the provider configuration, not the environment.
        return {
            "CODEX_HOME": str(codex_home),
            "TMPDIR": str(ctx.home_folder("tmp")),
            **self.credential_env(base_url=False),
        }

    def observe(self, event: dict[str, Any], run: CliRun) -> list[Observation]:
        kind = event.get("type")
        if kind == "item.completed":
            return self._item(as_dict(event.get("item")), run)
        if kind == "turn.completed":
            run.final = event
            usage = as_dict(event.get("usage"))
            run.add_usage(
                input=as_int(usage.get("input_tokens")),
                cached_input=as_int(usage.get("cached_input_tokens")),
                output=as_int(usage.get("output_tokens")),
            )
            return []
        if kind == "turn.failed":
            run.final = event
            run.is_error = True
            run.result_text = str(as_dict(event.get("error")).get("message", ""))
            _explain(run)
            return []
        if kind == "error":
            message = str(event.get("message", ""))
            return [("error", message[:500], {})]
        return []

    def _item(self, item: dict[str, Any], run: CliRun) -> list[Observation]:
        kind = item.get("type")
        if kind in _TOOL_ITEMS:
            run.turns = (run.turns or 0) + 1
        if kind == "agent_message":
            run.answer = str(item.get("text", ""))  # the last one is the answer
            return [("message", run.answer, {})]
        if kind == "command_execution":
            command = str(item.get("command", ""))
            return [
                (
                    "tool_call",
                    command[:300],
                    {
                        "tool": "shell",
                        "exit_code": item.get("exit_code"),
                        "status": item.get("status"),
                    },
                )
            ]
        if kind == "file_change":
            raw = item.get("changes")
            changes = [c for c in raw if isinstance(c, dict)] if isinstance(raw, list) else []
            paths = [str(c.get("path", "")) for c in changes]
            found: list[Observation] = [
                ("tool_call", f"apply_patch {', '.join(paths)}"[:300], {"tool": "apply_patch"})
            ]
            found += [
                (
                    "file_change",
                    path,
                    {"tool": "apply_patch", "path": path, "change": c.get("kind")},
                )
                for path, c in zip(paths, changes, strict=True)
            ]
            return found
        if kind in ("mcp_tool_call", "web_search"):
            return [
                ("tool_call", str(item.get("tool") or item.get("query") or kind), {"tool": kind})
            ]
        if kind == "reasoning" and item.get("text"):
            return [("reasoning", str(item["text"])[:500], {})]
        return []


_STATUS = re.compile(r"status:?\s*(\d{3})\b", re.IGNORECASE)


def _explain(run: CliRun) -> None:
    """Classify a failed turn from its message: by the HTTP status it names, else by its
    wording. The `url: …` Codex appends is left out (a port can read as a status)."""
    text = run.result_text
    wording = text.split(", url: ", 1)[0]
    lowered = wording.lower()
    match = _STATUS.search(wording)
    status = int(match.group(1)) if match else None
    if status == 429 or any(w in lowered for w in ("usage limit", "rate limit", "quota")):
        run.fail("rate_limited", text)
        run.retry_at = _try_again_at(text)
    elif status in (401, 403) or "api key" in lowered:
        run.fail("auth", text)
    elif "connection failed" in lowered or "error sending request" in lowered:
        run.fail("model_unreachable", text)
    elif (
        (status is not None and status >= 500)
        or "high demand" in lowered
        or "stream disconnected" in lowered
    ):
        run.fail("model_error", text)
    else:
        run.fail("agent_error", text or "the turn failed")


def _try_again_at(text: str) -> datetime | None:
    """`…try again at 3:55 PM.` (the CLI's local time) → the next such moment."""
    match = _TRY_AGAIN.search(text)
    if match is None:
        return None
    hour, minute = (
        int(match.group(1)) % 12 if match.group(3) else int(match.group(1)),
        int(match.group(2)),
    )
    if match.group(3) and match.group(3).upper() == "PM":
        hour += 12
    now = datetime.now().astimezone()
    try:
        moment = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    except ValueError:
        return None
    return moment if moment > now else moment + timedelta(days=1)


RUNNER = CodexRunner
