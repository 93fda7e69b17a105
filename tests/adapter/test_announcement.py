"""What an adapter announces when it comes online (`Adapter.announcement`, the
`worker.online` event and its liveness hash): kind, models, concurrency, the CLI's version
as `<cli> --version` says it at start, and what its runner can do."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

from redis.asyncio import Redis

from swarm_adapter import upkeep
from swarm_adapter.runners import get_runner
from swarm_adapter.settings import AdapterSettings
from swarm_adapter.worker import Adapter
from swarm_common.capabilities import KIND_CAPABILITIES
from tests.waiting import wait_until_async


def _codex(folder: Path) -> Path:
    """A `codex` whose `--version` answers as the real one does."""
    path = folder / "codex"
    path.write_text("#!/bin/sh\necho 'codex-cli 0.99.1'\necho 'second line'\n")
    path.chmod(0o755)
    return path


async def test_an_agent_cli_adapter_announces_its_version_models_and_capabilities(
    redis: Redis, redis_url: str, redis_prefix: str, workspace: Path, tmp_path: Path
) -> None:
    settings = AdapterSettings(
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        workspace=workspace,
        agent="codex",
        worker_name="codex-test",
        concurrency=3,
        codex_path=_codex(tmp_path),
        worker_ttl_s=30,
    )
    runner = get_runner("codex", settings)
    runner.environ["OPENAI_API_KEY"] = "sk-test-not-a-real-key"
    await runner.check()
    adapter = Adapter(settings=settings, redis=redis, runner=runner)
    said = adapter.announcement()
    assert (said.agent, said.concurrency, said.cli_version) == ("codex", 3, "codex-cli 0.99.1")
    assert said.models == ["gpt-5.5"]  # its default model, as no list was given
    assert set(said.capabilities) == KIND_CAPABILITIES["codex"]

    loop = asyncio.create_task(upkeep.advertise(adapter))
    try:
        key = adapter.keys.worker("codex-test")
        fields = await wait_until_async(lambda: redis.hgetall(key), message="liveness hash")
        assert fields[b"cli_version"] == b"codex-cli 0.99.1"
        assert json.loads(fields[b"models"]) == ["gpt-5.5"]
        assert set(json.loads(fields[b"capabilities"])) == KIND_CAPABILITIES["codex"]
        assert fields[b"busy"] == b"0"
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop


def test_models_come_from_the_setting_and_shell_announces_no_version(
    adapter: Adapter, adapter_settings: AdapterSettings
) -> None:
    said = adapter.announcement()
    assert (said.agent, said.cli_version, said.models, said.capabilities) == ("shell", None, [], [])
    listed = AdapterSettings(
        **{**adapter_settings.model_dump(), "agent": "claude", "models": "opus, sonnet,opus"}
    )
    assert listed.announced_models == ["opus", "sonnet"]
