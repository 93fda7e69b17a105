"""`swarm adapter --check-health`: could an adapter with these settings work right now? The
probe of a container's health check (the adapter image's `HEALTHCHECK`), run beside the
adapter as a process of its own, so it starts no adapter and takes no work.

It asks what an adapter needs from outside: Redis answers a PING as the adapter's own user
(a wrong password or an unreachable server fails, within a deadline below the health
check's timeout), the kind's runner can run here (its CLI is installed and executable and
has its key; the shell agent is enabled and finds bash), and the workspace is a folder it may
write. It stays cheap, as it runs every half minute: it does not run the CLI (Gemini's takes
seconds of CPU to say its version). The adapter ran `<cli> --version` when it started and
refused to start without an answer, and a CLI that breaks later is the start-up watchdog's
business (`swarm_adapter.watchdog`). The answer is a list of what is wrong, empty when
healthy."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from swarm_adapter.runners import RunnerUnavailable, get_runner
from swarm_adapter.runners.cli import AgentCliRunner
from swarm_adapter.settings import AdapterSettings
from swarm_common.settings import redact_url

__all__ = ["DEADLINE_S", "check_health", "problems"]

DEADLINE_S = 5.0
"""How long Redis may take to answer: below the image's `HEALTHCHECK --timeout`."""


def check_health(settings: AdapterSettings) -> int:
    """The probe as a command: 0 and one line when healthy, else 1 and a line per problem
    (Docker keeps a health check's output: `docker inspect` shows why)."""
    found = asyncio.run(problems(settings))
    if found:
        for problem in found:
            print(f"unhealthy: {problem}", file=sys.stderr)  # noqa: T201 - the probe's answer
        return 1
    print(  # noqa: T201
        f"healthy: Redis answers, the {settings.agent} runner can run, the workspace is writable"
    )
    return 0


async def problems(settings: AdapterSettings, *, deadline_s: float = DEADLINE_S) -> list[str]:
    """What keeps an adapter with `settings` from working now; empty when nothing does."""
    found = await asyncio.gather(
        _redis_problem(settings, deadline_s),
        _runner_problem(settings),
    )
    return [p for p in (*found, _workspace_problem(settings.workspace)) if p is not None]


async def _redis_problem(settings: AdapterSettings, deadline_s: float) -> str | None:
    if settings.redis_url is None:
        return "SWARM_REDIS_URL is not set"
    url = settings.redis_url.get_secret_value()
    client = Redis.from_url(  # one try: a probe reports, the adapter itself retries
        url,
        socket_connect_timeout=deadline_s,
        socket_timeout=deadline_s,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        await asyncio.wait_for(client.ping(), timeout=deadline_s)
    except (RedisError, OSError, TimeoutError) as exc:
        return f"Redis at {redact_url(url)} does not answer: {type(exc).__name__}: {exc}"
    finally:
        await client.aclose()
    return None


async def _runner_problem(settings: AdapterSettings) -> str | None:
    try:
        runner = get_runner(settings.agent, settings)
        if isinstance(runner, AgentCliRunner):
            reason = runner.unavailable(settings, runner.environ)
            if reason is None and not os.access(runner.path or "", os.X_OK):
                reason = f"{runner.path} is not executable"
            if reason is not None:
                return f"the {settings.agent} adapter cannot start: {reason}"
        else:
            await runner.check()
    except RunnerUnavailable as exc:
        return str(exc)
    return None


def _workspace_problem(workspace: Path) -> str | None:
    if not workspace.is_dir():
        return f"the workspace {workspace} is not a folder"
    if not os.access(workspace, os.W_OK | os.X_OK):
        return f"the workspace {workspace} is not writable by uid {os.getuid()}"
    return None
