"""Which adapters `swarm up` starts, and what each of its children sees of the environment:
`--adapters KIND=N` parsed, the agent kinds that cannot run here skipped with the reason,
each adapter given only its own agent's key, the orchestrator no agent key at all.

`swarm_adapter.runners` is looked up at each call (not imported by name), so a test can
stand in for `runners.unavailable`."""

from __future__ import annotations

from swarm_adapter import runners
from swarm_cli.client import CliError
from swarm_common.specs import ADAPTER_KINDS, NOOP_AGENT

__all__ = [
    "NOOP_CONCURRENCY",
    "agent_environ",
    "environment_for",
    "parse_adapters",
    "plan_adapters",
]

DEFAULT_SHELL_ADAPTERS = 2
NOOP_CONCURRENCY = 256
"""Slots of each `noop` adapter `swarm up` starts (one by default: joins and milestones)."""


def plan_adapters(
    requested: dict[str, int] | None, environ: dict[str, str]
) -> tuple[dict[str, int], dict[str, str]]:
    """The adapters to start, and the agent kinds skipped with the reason."""
    wanted = (
        dict(requested)
        if requested is not None
        else {
            "shell": DEFAULT_SHELL_ADAPTERS,
            NOOP_AGENT: 1,
            **dict.fromkeys(runners.AGENT_CLIS, 1),
        }
    )
    start: dict[str, int] = {}
    skipped: dict[str, str] = {}
    for kind, count in wanted.items():
        if count <= 0:
            continue
        reason = runners.unavailable(kind, agent_environ(kind, environ))
        if reason is None:
            start[kind] = count
        else:
            skipped[kind] = reason
    return start, skipped


def parse_adapters(text: str) -> dict[str, int]:
    """`shell=2,claude=1` → {"shell": 2, "claude": 1}."""
    result: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, _, count = part.partition("=")
        kind = kind.strip()
        if kind not in ADAPTER_KINDS:
            raise CliError(
                f"unknown agent kind {kind!r} in --adapters; known: {', '.join(ADAPTER_KINDS)}"
            )
        try:
            n = int(count) if count else 1
        except ValueError:
            raise CliError(f"--adapters: {part!r} is not KIND=N") from None
        if not 0 <= n <= 64:
            raise CliError(f"--adapters: {kind} count must be 0 to 64")
        result[kind] = n
    return result


ALLOW_COMMANDS_ENV = "SWARM_ALLOW_COMMANDS"


def environment_for(kind: str | None, env: dict[str, str]) -> dict[str, str]:
    """What one child gets: each adapter only its own agent's key and base URL, no database
    URL and no API token (shell adapters are allowed to run shell tasks); the orchestrator no
    agent key at all."""
    classes = {agent: runners.cli_runner_class(agent) for agent in runners.AGENT_CLIS}
    owned = {agent: {cls.key_env, cls.base_url_env} for agent, cls in classes.items()}
    hidden = set().union(*owned.values()) - owned.get(kind or "", set())
    if kind is not None:
        hidden |= {"SWARM_DATABASE_URL", "SWARM_API_TOKEN"}
        env = agent_environ(kind, env)
    return {k: v for k, v in env.items() if k not in hidden}


def agent_environ(kind: str, environ: dict[str, str]) -> dict[str, str]:
    """`environ` as an adapter of `kind` sees it: `swarm up` runs shell tasks (the demo is
    made of them), so shell adapters get `SWARM_ALLOW_SHELL_AGENT=true`, and every adapter
    runs sessions' setup and gate commands (`SWARM_ALLOW_COMMANDS=true`: one machine, one
    user), unless the user set them."""
    extra = {ALLOW_COMMANDS_ENV: "true"}
    if kind == "shell":
        extra[runners.ALLOW_SHELL_ENV] = "true"
    return {**environ, **{k: v for k, v in extra.items() if not environ.get(k)}}
