"""Agent runners behind one interface (`Runner`); `get_runner(kind)` picks one."""

from __future__ import annotations

import importlib
import os

from swarm_adapter.runners.base import RunContext, Runner, RunnerUnavailable, RunResult
from swarm_adapter.runners.cli import AgentCliRunner
from swarm_adapter.runners.shell import ShellRunner
from swarm_adapter.settings import AdapterSettings

__all__ = [
    "AGENT_CLIS",
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


def cli_runner_class(agent: str) -> type[AgentCliRunner]:
    module = importlib.import_module(f"swarm_adapter.runners.{agent}")
    cls: type[AgentCliRunner] = module.RUNNER
    return cls


def get_runner(agent: str, settings: AdapterSettings | None = None) -> Runner:
    if agent == ShellRunner.agent:
        return ShellRunner()
    if agent in AGENT_CLIS:
        return cli_runner_class(agent)(settings or AdapterSettings(agent=agent))
    raise RunnerUnavailable(f"no runner for agent kind {agent!r} in this version")


def unavailable(agent: str, environ: dict[str, str] | None = None) -> str | None:
    """Why an adapter of `agent` could not run with this environment; None when it can."""
    if agent == ShellRunner.agent:
        return None
    env = dict(os.environ if environ is None else environ)
    settings = AdapterSettings(agent=agent)
    return cli_runner_class(agent).unavailable(settings, env)
