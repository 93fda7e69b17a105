"""Agent runners behind one interface (`Runner`); `get_runner(kind)` picks one."""

from __future__ import annotations

from swarm_adapter.runners.base import RunContext, Runner, RunnerUnavailable, RunResult
from swarm_adapter.runners.shell import ShellRunner

__all__ = ["RunContext", "RunResult", "Runner", "RunnerUnavailable", "get_runner"]

_RUNNERS: dict[str, type[Runner]] = {ShellRunner.agent: ShellRunner}


def get_runner(agent: str) -> Runner:
    try:
        return _RUNNERS[agent]()
    except KeyError:
        raise RunnerUnavailable(f"no runner for agent kind {agent!r} in this version") from None
