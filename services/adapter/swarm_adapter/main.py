"""`swarm adapter`: run one adapter process until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from redis.asyncio import Redis

from swarm_adapter.runners import RunnerUnavailable, get_runner
from swarm_adapter.settings import AdapterSettings
from swarm_adapter.worker import Adapter
from swarm_common.logs import setup_logging

__all__ = ["main", "serve"]

log = logging.getLogger(__name__)


async def serve(settings: AdapterSettings) -> int:
    try:
        runner = get_runner(settings.agent, settings)
        await runner.check()
    except RunnerUnavailable as exc:
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
    adapter = Adapter(settings=settings, redis=redis, runner=runner)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, adapter.stop)
    try:
        await adapter.run()
    finally:
        await redis.aclose()
    return 0


def main(settings: AdapterSettings) -> int:
    setup_logging(settings.log_level)
    settings.workspace.mkdir(parents=True, exist_ok=True)
    return asyncio.run(serve(settings))
