"""`swarm adapter`: the process around one `worker.Adapter`. It runs until SIGTERM or SIGINT
(drain: running attempts get `shutdown_grace_s` to finish) or SIGUSR1 (emergency stop:
agents are killed at once); SIGQUIT logs where every coroutine waits.

At start the adapter drops any database URL from its environment (it never uses one), and
refuses to run an agent kind it may not run here (exit code 2): a CLI that is missing, the
shell agent without `SWARM_ALLOW_SHELL_AGENT=true`, or no sandbox with
`SWARM_SANDBOX=required` (`sandbox`: which one it runs agents in, said once). Then it
makes the Redis client the adapter uses; everything else (the task stream, events,
attempts) is the adapter's. An
adapter that left rotation (its last attempts all failed at start, see `watchdog`) exits
with status 3 (`OUT_OF_ROTATION_EXIT`), so that its supervisor notices."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import Any

from redis.asyncio import Redis

from swarm_adapter.runners import RunnerUnavailable, get_runner
from swarm_adapter.sandbox import SandboxUnavailable, sandboxing_for
from swarm_adapter.settings import AdapterSettings, drop_database_credentials
from swarm_adapter.watchdog import OUT_OF_ROTATION_EXIT
from swarm_adapter.worker import Adapter
from swarm_common.logs import setup_logging
from swarm_common.private import keep_private, private_dir

__all__ = ["main", "serve"]

log = logging.getLogger(__name__)


async def serve(settings: AdapterSettings) -> int:
    try:
        runner = get_runner(settings.agent, settings)
        await runner.check()
        sandboxing = await asyncio.to_thread(sandboxing_for, settings, runner)
    except (RunnerUnavailable, SandboxUnavailable) as exc:
        print(f"swarm adapter: {exc}", file=sys.stderr)  # noqa: T201 - the user's answer
        return 2
    redis = Redis.from_url(
        settings.require_redis_url(),
        decode_responses=False,
        socket_connect_timeout=5,
        socket_timeout=max(30.0, settings.read_block_ms / 1000 + 10),  # above our BLOCK
        socket_keepalive=True,
        health_check_interval=30,
    )
    adapter = Adapter(settings=settings, redis=redis, runner=runner, sandboxing=sandboxing)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, adapter.stop)
    loop.add_signal_handler(signal.SIGUSR1, adapter.emergency_stop)
    loop.add_signal_handler(signal.SIGQUIT, _dump_tasks)
    try:
        await adapter.run()
    finally:
        await redis.aclose()
    return OUT_OF_ROTATION_EXIT if adapter.retired is not None else 0


def _dump_tasks() -> None:
    """SIGQUIT: log where every coroutine waits (the whole await chain), to find out why an
    adapter seems stuck."""
    lines = []
    for task in asyncio.all_tasks():
        lines.append(f"task {task.get_name()}:")
        awaited: Any = task.get_coro()
        while awaited is not None:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is not None:
                lines.append(
                    f"  {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}"
                )
            else:
                lines.append(f"  {awaited!r}"[:300])
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    log.warning("SIGQUIT: the adapter's tasks\n%s", "\n".join(lines))


def main(settings: AdapterSettings) -> int:
    keep_private()
    setup_logging(settings.log_level)
    drop_database_credentials(os.environ)
    private_dir(settings.workspace)
    return asyncio.run(serve(settings))
