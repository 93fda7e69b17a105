"""What every agent CLI runner shares: finding the binary, credentials from the adapter's
own environment, a clean environment and a private HOME per attempt, the redacted raw
transcript, parsing JSON lines as they stream, the limits a run is held to while it runs (a
turn limit for CLIs without one, the task's spend cap: `swarm_adapter.spend_cap`), and
deciding the outcome.

A CLI's runner (`claude.py`, `codex.py`, `gemini.py`) says how to build its command and its
configuration (`command`, `configure`; a read-only task runs the CLI read-only where it can),
how to read one line of its output (`observe`, which also keeps the agent's final answer in
`CliRun.answer`), and how to classify its failures (`classify`).

A CLI that fails before its first JSON event never got going (a missing or broken binary, a
missing library, a crash on start): whatever `classify` said, the attempt fails with
`startup_failed` and the CLI's last output, and counts toward its adapter's start-up
watchdog (`swarm_adapter.watchdog`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from swarm_adapter.answers import unfenced
from swarm_adapter.prompts import build_prompt
from swarm_adapter.runners.base import RunContext, RunnerUnavailable, RunResult, base_env
from swarm_adapter.settings import AdapterSettings
from swarm_adapter.spend_cap import REASON as SPENT
from swarm_adapter.spend_cap import SpendCap, price_table
from swarm_adapter.watchdog import STARTUP_FAILED
from swarm_common.messages import TaskMessage
from swarm_common.procs import OutputTail, ProcessResult, run_process
from swarm_common.redaction import Redactor
from swarm_common.specs import check_model, check_tool

__all__ = [
    "AgentCliRunner",
    "CliRun",
    "Credentials",
    "Observation",
    "as_dict",
    "as_int",
    "invalid_arguments",
    "prompt_argument",
]

log = logging.getLogger(__name__)

VERSION_TIMEOUT_S = 60.0
START_OUTPUT_CHARS = 1500
"""How much of a CLI's last output goes into a start failure's error."""
_DIED_AT_START = frozenset({"exit_code", "crash", "no_result"})
"""Outcomes (`classify`) that, before any event, say the CLI never got going."""
TRANSCRIPT = "transcript.jsonl"
MAX_MODEL_CHARS = 200
"""A model name longer than this is cut (what a CLI prints is not trusted)."""
PROMPT_ARG_BYTES = 100_000
"""Longer prompts go into a file: Linux caps one argument at 128 KiB."""

Observation = tuple[str, str, dict[str, Any]]
"""`(kind, text, data)`: one thing the agent did, for the timeline (see `ProgressHandler`)."""


def prompt_argument(ctx: RunContext, prompt: str) -> tuple[str, list[Path]]:
    """The prompt as a command-line argument, or, when too long for one, a short prompt
    naming the file (in the agent's private home) that holds it."""
    if len(prompt.encode()) <= PROMPT_ARG_BYTES:
        return prompt, []
    path = ctx.home / "TASK.md"
    path.write_text(prompt, encoding="utf-8")
    short = (
        f"# Task: {ctx.message.title}\n\nThe full task is too long for the command line. "
        f"It is in the file {path}. Read that whole file first, then do what it says."
    )
    return short, [ctx.home]


def invalid_arguments(message: TaskMessage) -> str | None:
    """Why the task's model or tool names may not reach a command line (one that begins
    with `-` would read as an option: `--allowedTools` takes each tool as an argument of its
    own); None when they may. The API checks them too; this holds for any message."""
    try:
        if message.model:
            check_model(message.model)
        for tool in message.allowed_tools or ():
            check_tool(tool)
    except ValueError as exc:
        return str(exc)
    return None


def as_dict(value: Any) -> dict[str, Any]:
    """`value` when it is a JSON object, else an empty one (CLI output is not trusted)."""
    return value if isinstance(value, dict) else {}


def as_int(value: Any) -> int:
    """`value` when it is a non-negative integer, else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


@dataclass(frozen=True)
class Credentials:
    """An agent's key and optional base URL, as the adapter's own environment holds them."""

    api_key: str | None
    base_url: str | None

    def __repr__(self) -> str:  # never print a key
        return f"Credentials(api_key={'set' if self.api_key else None}, base_url={self.base_url!r})"


@dataclass
class CliRun:
    """What one run of an agent CLI has reported so far, as its output streams."""

    usage: dict[str, int] = field(default_factory=dict)
    cost_usd: float | None = None
    model: str | None = None
    """The model the CLI says it runs on (its init event), when it says."""
    final: dict[str, Any] | None = None
    """The CLI's closing event (its `result`)."""
    result_text: str = ""
    is_error: bool = False
    errors: list[str] = field(default_factory=list)
    reason: str | None = None
    """A failure the output already explains: `auth`, `rate_limited`, `turn_limit`, ..."""
    retry_at: datetime | None = None
    turns: int | None = None
    answer: str | None = None
    """The agent's final message as the CLI reported it (see `RunResult.answer`)."""
    lines: int = 0
    events: int = 0
    """JSON events read: none means the CLI died before it started (`STARTUP_FAILED`)."""
    notes: dict[str, Any] = field(default_factory=dict)
    """Whatever a CLI's runner wants to remember between lines."""

    def add_usage(self, **tokens: int | None) -> None:
        for name, value in tokens.items():
            if isinstance(value, int) and value >= 0:
                self.usage[name] = self.usage.get(name, 0) + value

    def set_usage(self, **tokens: int | None) -> None:
        for name, value in tokens.items():
            if isinstance(value, int) and value >= 0:
                self.usage[name] = value

    def said_model(self, value: Any) -> None:
        """The CLI named the model it runs on (a name, or nothing worth keeping)."""
        if isinstance(value, str) and value.strip():
            self.model = value.strip()[:MAX_MODEL_CHARS]

    def fail(self, reason: str, error: str = "") -> None:
        """Note a failure; the first explained one wins."""
        if self.reason is None:
            self.reason = reason
        if error:
            self.errors.append(error[:2000])


class AgentCliRunner(ABC):
    """Runs one agent CLI headless in a worktree; see the module docstring."""

    agent: ClassVar[str]
    package: ClassVar[str]
    """The npm package, named in the error when the CLI is missing."""
    binary: ClassVar[str]
    key_env: ClassVar[str]
    base_url_env: ClassVar[str]
    default_base_url: ClassVar[str]
    """Where the CLI goes when no base URL is set."""
    enforce_turns: ClassVar[bool] = False
    """For a CLI without a turn limit of its own: stop it once `run.turns` passes it."""
    capabilities: ClassVar[frozenset[str]] = frozenset()
    """What the runner can do for a task (`swarm_common.capabilities`), announced."""

    def __init__(
        self, settings: AdapterSettings | None = None, environ: dict[str, str] | None = None
    ) -> None:
        self.settings = settings or AdapterSettings(agent=self.agent)
        self.environ = dict(os.environ if environ is None else environ)
        self.credentials = Credentials(
            api_key=self.environ.get(self.key_env) or None,
            base_url=self.environ.get(self.base_url_env) or None,
        )
        self.path = self.find_binary(self.settings, self.environ)
        self.redact = Redactor(self.secrets)
        self.prices = price_table(self.environ)
        """What the spend cap of a task prices its usage by (`swarm_adapter.spend_cap`)."""
        self.version: str | None = None
        """What `<cli> --version` said (`check`), announced when the adapter comes online."""

    @property
    def secrets(self) -> list[str]:
        """The key, and any credentials written into the base URL."""
        found = [self.credentials.api_key or ""]
        if self.credentials.base_url:
            parts = urlsplit(self.credentials.base_url)
            found += [parts.password or "", parts.username or ""]
        return [s for s in found if s]

    def credential_env(self, *, base_url: bool = True) -> dict[str, str]:
        """The key (and the base URL, for CLIs that read it from the environment) under the
        vendor's own names, for this CLI process only."""
        env = {}
        if self.credentials.api_key:
            env[self.key_env] = self.credentials.api_key
        if base_url and self.credentials.base_url:
            env[self.base_url_env] = self.credentials.base_url
        return env

    def model_apis(self) -> list[str]:
        return [self.credentials.base_url or self.default_base_url]

    def sandbox_paths(self) -> list[Path]:
        """The CLI's link and its whole `node_modules` (its native parts are packages of
        their own beside it), or its own folder when it is not an npm package."""
        if self.path is None:
            return []
        real = self.path.resolve()
        packages = [p for p in real.parents if p.name == "node_modules"]
        return [self.path.parent, packages[-1] if packages else real.parent]

    @classmethod
    def find_binary(cls, settings: AdapterSettings, environ: dict[str, str]) -> Path | None:
        configured = getattr(settings, f"{cls.agent}_path", None)
        if configured is not None:
            return Path(configured) if Path(configured).exists() else None
        found = shutil.which(cls.binary, path=environ.get("PATH"))
        return Path(found) if found else None

    @classmethod
    def unavailable(cls, settings: AdapterSettings, environ: dict[str, str]) -> str | None:
        """Why this agent cannot run here (CLI or key missing); None when it can."""
        if cls.find_binary(settings, environ) is None:
            return (
                f"the `{cls.binary}` CLI is not installed: `npm install -g {cls.package}` "
                f"(or set SWARM_{cls.agent.upper()}_PATH)"
            )
        if not environ.get(cls.key_env):
            return f"{cls.key_env} is not set"
        return None

    async def check(self) -> None:
        reason = self.unavailable(self.settings, self.environ)
        if reason is not None:
            raise RunnerUnavailable(f"the {self.agent} adapter cannot start: {reason}")
        assert self.path is not None
        try:
            proc = await asyncio.create_subprocess_exec(
                str(self.path),
                "--version",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env={"PATH": self.environ.get("PATH", ""), "HOME": self.environ.get("HOME", "/")},
            )
            out, _ = await asyncio.wait_for(proc.communicate(), timeout=VERSION_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise RunnerUnavailable(f"`{self.path} --version` failed: {exc!r}") from None
        if proc.returncode != 0:
            raise RunnerUnavailable(
                f"`{self.path} --version` exited {proc.returncode}: "
                f"{out.decode(errors='replace')[-300:]}"
            )
        self.version = _first_line(out.decode(errors="replace"))
        log.info(
            "agent CLI found",
            extra={"agent": self.agent, "path": str(self.path), "version": self.version},
        )

    # -- what each CLI says ---------------------------------------------------------------

    @abstractmethod
    def command(self, ctx: RunContext, prompt: str, *, readable: list[Path]) -> list[str]:
        """The argv (never a shell string) of one headless run. `readable` lists folders
        outside the worktree the agent must be able to read (where a long prompt went)."""

    @abstractmethod
    def configure(self, ctx: RunContext) -> dict[str, str]:
        """Write the CLI's configuration under `ctx.home`; return the environment it needs
        beyond the common allowlist (its key goes here, to this process only)."""

    @abstractmethod
    def observe(self, event: dict[str, Any], run: CliRun) -> list[Observation]:
        """Read one JSON line: update `run`, return observations `(kind, text, data)` for the
        timeline (`message`, `tool_call`, `tool_result`, `file_change`, `error`, ...)."""

    def observe_text(self, line: str, run: CliRun) -> None:
        """A line that is not JSON (stderr, say): kept as an error when it reads like one."""
        if "error" in line.lower() and len(run.errors) < 20:
            run.errors.append(line[:500])

    def classify(self, proc: ProcessResult, run: CliRun) -> RunResult:
        """The outcome, from the exit code and the closing event."""
        if proc.exit_code == 0 and run.final is not None and not run.is_error and not run.reason:
            return RunResult(outcome="succeeded", exit_code=0)
        if run.reason:
            return RunResult(
                outcome="failed",
                exit_code=proc.exit_code,
                reason=run.reason,
                error="; ".join(run.errors)[:2000],
                retry_at=run.retry_at,
            )
        if proc.exit_code is not None and proc.exit_code < 0:
            return RunResult(
                outcome="failed",
                exit_code=proc.exit_code,
                reason="crash",
                error=f"killed by signal {-proc.exit_code}",
            )
        if proc.exit_code == 0:
            return RunResult(
                outcome="failed",
                exit_code=0,
                reason="no_result",
                error="the CLI exited without a final result",
            )
        error = "; ".join(run.errors) or f"exited with code {proc.exit_code}"
        return RunResult(
            outcome="failed", exit_code=proc.exit_code, reason="exit_code", error=error[:2000]
        )

    # -- one run ---------------------------------------------------------------------------

    def model(self, ctx: RunContext) -> str | None:
        return ctx.message.model or getattr(self.settings, f"{self.agent}_model", None)

    def model_option(self, ctx: RunContext) -> list[str]:
        """`--model=<name>` when the task or the settings name a model: one argument, so
        that a name beginning with `-` cannot read as an option (as `-m --x` would)."""
        model = self.model(ctx)
        return [f"--model={model}"] if model else []

    def max_turns(self, ctx: RunContext) -> int:
        return ctx.message.max_turns or self.settings.max_turns

    async def run(self, ctx: RunContext) -> RunResult:
        refused = invalid_arguments(ctx.message)
        if refused is not None:
            return RunResult(
                outcome="failed", exit_code=None, reason="invalid_task", error=refused[:500]
            )
        env = base_env(ctx, self.environ)
        env.update(self.configure(ctx))
        prompt, readable = prompt_argument(ctx, build_prompt(ctx.message))
        argv = self.command(ctx, prompt, readable=readable)
        transcript_path = ctx.artifacts / TRANSCRIPT
        run = CliRun()
        tail = OutputTail(ctx.tail_bytes)  # of redacted lines: a cut never splits a key
        # Buffered writes of whole lines; the file is opened off the event loop.
        transcript = await asyncio.to_thread(open, transcript_path, "w", encoding="utf-8")
        with transcript:

            async def on_line(raw: bytes) -> None:
                text = self.redact(raw.decode("utf-8", errors="replace")).rstrip("\n")
                transcript.write(text + "\n")
                tail.add((text + "\n").encode())
                run.lines += 1
                self._read(text, run, ctx)
                if not stop.is_set() and self._past_limits(run, ctx, cap):
                    stop.set()

            cap = SpendCap.of(ctx.message, kind=self.agent, table=self.prices)
            stop = asyncio.Event()  # the person's cancel, or our own turn or spend limit
            relay = asyncio.create_task(_forward(ctx.cancel, stop))
            try:
                proc = await run_process(
                    ctx.wrap(argv),
                    cwd=ctx.worktree,
                    env=env,
                    timeout_s=ctx.message.timeout_s,
                    cancel=stop,
                    kill_grace_s=ctx.kill_grace_s,
                    tail_bytes=ctx.tail_bytes,
                    on_line=on_line,
                )
            finally:
                relay.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await relay
        if proc.cancelled and not ctx.cancel.is_set():  # stopped by a turn or spend limit
            result = self.classify(proc, run)
        elif proc.cancelled:
            result = RunResult(outcome="cancelled", exit_code=None, reason="cancelled")
        elif proc.timed_out:
            result = RunResult(
                outcome="failed",
                exit_code=None,
                reason="timeout",
                error=f"timed out after {ctx.message.timeout_s}s",
            )
        else:
            result = self.classify(proc, run)
            if run.events == 0 and result.reason in _DIED_AT_START:
                result.reason, result.error = STARTUP_FAILED, self._died_at_start(proc, tail)
        result.output_tail = tail.text()
        result.error = self.redact(result.error)
        result.duration_s = proc.duration_s
        result.usage = dict(run.usage)
        result.cost_usd = run.cost_usd
        result.model = (run.model or self.model(ctx) or "")[:MAX_MODEL_CHARS] or None
        result.transcript_path = transcript_path
        if run.answer is not None:
            result.answer = unfenced(self.redact(run.answer))
        return result

    def _past_limits(self, run: CliRun, ctx: RunContext, cap: SpendCap | None) -> bool:
        """Whether the run passed a limit it is held to while it runs, noted as its failure:
        the turn limit (a CLI without one of its own) or its task's spend cap (until its
        closing event: then it has ended already, see `swarm_adapter.spend_cap`)."""
        if self.enforce_turns and (run.turns or 0) > self.max_turns(ctx):
            run.fail("turn_limit", f"more than {self.max_turns(ctx)} turns")
            return True
        if cap is None or run.final is not None:
            return False
        why = cap.passed(run.usage, run.model or self.model(ctx))
        if why is not None:
            run.fail(SPENT, why)
        return why is not None

    def _died_at_start(self, proc: ProcessResult, output: OutputTail) -> str:
        """What a CLI that ended before its first event did, with its last output (its
        stderr: a missing library, a crash), redacted as every line of it is."""
        code = proc.exit_code
        how = f"was killed by signal {-code}" if code is not None and code < 0 else None
        said = output.text().strip()[-START_OUTPUT_CHARS:] or "(nothing)"
        return (
            f"the {self.binary} CLI ({self.path}) {how or f'exited with code {code}'} "
            f"before its first event; its last output: {said}"
        )

    def _read(self, text: str, run: CliRun, ctx: RunContext) -> None:
        stripped = text.strip()
        if not stripped:
            return
        try:
            event = json.loads(stripped) if stripped[0] == "{" else None
        except ValueError:
            event = None
        if not isinstance(event, dict):
            self.observe_text(stripped, run)
            return
        run.events += 1
        for kind, summary, data in self.observe(event, run):
            ctx.progress(kind, self.redact(summary), data)


async def _forward(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


def _first_line(text: str) -> str | None:
    """The version a CLI printed: its first non-empty line, at most 80 characters."""
    return next((line.strip()[:80] for line in text.splitlines() if line.strip()), None)
