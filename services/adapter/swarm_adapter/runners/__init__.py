"""Agent runners behind one interface (`Runner`); `get_runner(kind)` picks one.

The shell agent runs each task's prompt as a shell command: it is the only runner that
hands task text to a shell, so an adapter runs it only when `SWARM_ALLOW_SHELL_AGENT` is
true (`AdapterSettings.allow_shell_agent`)."""

from __future__ import annotations

import importlib
import os

from pydantic import TypeAdapter, ValidationError

from swarm_adapter.runners.base import RunContext, Runner, RunnerUnavailable, RunResult
from swarm_adapter.runners.cli import AgentCliRunner
from swarm_adapter.runners.shell import ShellRunner
from swarm_adapter.settings import AdapterSettings
from swarm_common.specs import NOOP_AGENT

__all__ = [
    "AGENT_CLIS",
    "ALLOW_SHELL_ENV",
    "SHELL_DISABLED",
    "RunContext",
    "RunResult",
    "Runner",
    "RunnerUnavailable",
    "cli_runner_class",
    "get_runner",
    "unavailable",
]

AGENT_CLIS = ("claude", "codex", "gemini")
"""Agent kinds run by an npm-installed CLI (the rest of `AGENT_KINDS` is `shell`)."""

ALLOW_SHELL_ENV = "SWARM_ALLOW_SHELL_AGENT"
SHELL_DISABLED = (
    "the shell agent runs every task's prompt as a shell command and is off by default: "
    f"set {ALLOW_SHELL_ENV}=true to run it"
)
_BOOL = TypeAdapter(bool)


def cli_runner_class(agent: str) -> type[AgentCliRunner]:
    module = importlib.import_module(f"swarm_adapter.runners.{agent}")
    cls: type[AgentCliRunner] = module.RUNNER
    return cls


def get_runner(agent: str, settings: AdapterSettings | None = None) -> Runner:
    """The runner of `agent`; `RunnerUnavailable` when this adapter may not run it."""
    settings = settings or AdapterSettings(agent=agent)
    if agent == ShellRunner.agent:
        if not settings.allow_shell_agent:
            raise RunnerUnavailable(SHELL_DISABLED)
        return ShellRunner()
    if agent in AGENT_CLIS:
        return cli_runner_class(agent)(settings)
    if agent == NOOP_AGENT:
        from swarm_adapter.noop import NoopRunner  # noqa: PLC0415 - it imports the worker's parts

        return NoopRunner()
    raise RunnerUnavailable(f"no runner for agent kind {agent!r} in this version")


def unavailable(agent: str, environ: dict[str, str] | None = None) -> str | None:
    """Why an adapter of `agent` could not run with this environment; None when it can."""
    env = dict(os.environ if environ is None else environ)
    if agent == ShellRunner.agent:
        return None if _truthy(env.get(ALLOW_SHELL_ENV)) else SHELL_DISABLED
    if agent == NOOP_AGENT:
        return None  # nothing to run
    settings = AdapterSettings(agent=agent)
    return cli_runner_class(agent).unavailable(settings, env)


def _truthy(value: str | None) -> bool:
    """Read as pydantic-settings reads a bool (`true`, `1`, `yes`, `on`, ...)."""
    if value is None:
        return False
    try:
        return _BOOL.validate_python(value.strip())
    except ValidationError:
        return False
