"""The adapter's handling of task messages, on real Redis and real git: from claim to ack."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from swarm_adapter.worker import Adapter
from swarm_common import git
from swarm_common.messages import Message, TaskMessage
from swarm_common.streams import Keys, encode
from tests.adapter.helpers import Mirror, events, message, pending, send
from tests.conftest import branch_commit
from tests.waiting import pid_alive, pid_in, wait_until, wait_until_async


async def test_a_task_runs_in_a_worktree_and_its_work_is_committed_on_its_branch(
    adapter: Adapter,
    redis: Redis,
    keys: Keys,
    mirror: Mirror,
    workspace: Path,
) -> None:
    msg = message(
        mirror, "mkdir -p src && echo 'print(1)' > src/app.py && rm README.md", role="backend"
    )
    await send(redis, keys, adapter, msg)
    assert await adapter.process_available() == 1
    started, succeeded = await events(redis, keys)
    assert started.TYPE == "task.started" and succeeded.TYPE == "task.succeeded"
    assert started.branch == msg.branch
    assert succeeded.exit_code == 0
    assert sorted(succeeded.changed_files) == ["README.md", "src/app.py"]
    commit = succeeded.commit
    assert branch_commit(mirror.path, msg.branch) == commit
    show = git.git("show", "-s", "--format=%an%n%B", commit, git_dir=mirror.path).stdout
    assert show.startswith("backend (swarm)\nTask t1\n")
    assert f"Swarm-Session: {mirror.session_id}" in show and "Swarm-Attempt: 1" in show
    assert await pending(redis, keys) == 0
    assert await redis.get(keys.claim(msg.task_id, 1)) == b"done:shell-test"
    assert not adapter.worktrees.path(msg).exists()
    assert not (workspace / "homes" / str(mirror.session_id) / "t1-1").exists()


async def test_a_persona_authors_the_commit_of_its_task(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror
) -> None:
    persona = {
        "name": "ada-lovelace",
        "style": "Writes the failing test first.",
        "author_name": "Ada Lovelace",
        "author_email": "ada@example.com",
    }
    msg = message(mirror, "echo 1 > one.txt", role="backend", persona=persona)
    await send(redis, keys, adapter, msg)
    await adapter.process_available()
    succeeded = (await events(redis, keys))[-1]
    assert succeeded.TYPE == "task.succeeded"
    show = git.git(
        "show", "-s", "--format=%an%n%ae%n%cn", succeeded.commit, git_dir=mirror.path
    ).stdout
    assert show.splitlines()[:3] == ["Ada Lovelace", "ada@example.com", "Swarm"]


async def test_a_failing_command_is_reported_with_its_exit_code_and_output(
    adapter: Adapter,
    redis: Redis,
    keys: Keys,
    mirror: Mirror,
) -> None:
    await send(redis, keys, adapter, message(mirror, "echo something broke; exit 3"))
    await adapter.process_available()
    failed = (await events(redis, keys))[-1]
    assert failed.TYPE == "task.failed"
    assert (failed.reason, failed.exit_code) == ("exit_code", 3)
    assert "something broke" in failed.output_tail
    assert failed.changed_files == [] and failed.commit == mirror.base


async def test_the_entry_is_not_acknowledged_before_the_result_is_written(
    adapter: Adapter,
    redis: Redis,
    keys: Keys,
    mirror: Mirror,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    publish = adapter.reporter.publish

    async def crash_on_result(event: Message, *, retry: bool = True) -> None:
        if event.TYPE == "task.succeeded":
            raise RuntimeError("adapter died here")
        await publish(event, retry=retry)

    monkeypatch.setattr(adapter.reporter, "publish", crash_on_result)
    await send(redis, keys, adapter, message(mirror, "true"))
    with pytest.raises(RuntimeError, match="adapter died here"):
        await adapter.process_available()
    assert await pending(redis, keys) == 1
    assert [e.TYPE for e in await events(redis, keys)] == ["task.started"]


async def test_a_duplicate_delivery_of_one_attempt_runs_once(
    adapter: Adapter,
    redis: Redis,
    keys: Keys,
    mirror: Mirror,
    tmp_path: Path,
) -> None:
    msg = message(mirror, f"echo ran >> {tmp_path}/runs")
    await send(redis, keys, adapter, msg)
    await send(redis, keys, adapter, msg)
    assert await adapter.process_available() == 2
    assert (tmp_path / "runs").read_text() == "ran\n"
    assert adapter.counts["duplicate"] == 1
    assert await pending(redis, keys) == 0
    # A new attempt of the same task is a new claim and runs.
    await send(redis, keys, adapter, msg.model_copy(update={"attempt": 2}))
    await adapter.process_available()
    assert (tmp_path / "runs").read_text() == "ran\nran\n"


async def test_bad_messages_are_dead_lettered_and_the_next_one_runs(
    adapter: Adapter,
    redis: Redis,
    keys: Keys,
    mirror: Mirror,
) -> None:
    await adapter.setup()
    stream = keys.tasks("shell")
    await redis.xadd(stream, {b"env": b"\x00\xff garbage"})
    await redis.xadd(stream, {b"env": b'{"v":1,"type":"task.run","id":"x","ts":"2026-01-01T00:00'})
    wrong_agent = message(mirror, "true").model_copy(update={"agent": "claude"})
    await redis.xadd(stream, encode(wrong_agent))  # type: ignore[arg-type]
    await send(redis, keys, adapter, message(mirror, "true", key="ok"))
    assert await adapter.process_available() == 4
    dead = await redis.xrange(keys.dead)
    assert len(dead) == 3
    assert [e.TYPE for e in await events(redis, keys)] == ["task.started", "task.succeeded"]
    assert await pending(redis, keys) == 0


async def test_a_timeout_fails_the_attempt_and_kills_its_processes(
    adapter: Adapter,
    redis: Redis,
    keys: Keys,
    mirror: Mirror,
    tmp_path: Path,
) -> None:
    prompt = f"sleep 60 & echo $! > {tmp_path}/bg; sleep 60"
    await send(redis, keys, adapter, message(mirror, prompt, timeout_s=1))
    await adapter.process_available()
    failed = (await events(redis, keys))[-1]
    assert (failed.TYPE, failed.reason) == ("task.failed", "timeout")
    background = int((tmp_path / "bg").read_text())
    await wait_until(lambda: not pid_alive(background), timeout_s=5)


async def test_a_cancel_request_stops_the_running_attempt(
    adapter: Adapter,
    redis: Redis,
    keys: Keys,
    mirror: Mirror,
    tmp_path: Path,
) -> None:
    msg = message(mirror, f"echo $$ > {tmp_path}/main; sleep 60 & echo $! > {tmp_path}/bg; wait")
    await send(redis, keys, adapter, msg)
    running = asyncio.create_task(adapter.process_available())
    pids = [await pid_in(tmp_path / n) for n in ("main", "bg")]
    await redis.set(keys.cancel(msg.task_id, 1), "cancelled by test")
    assert await asyncio.wait_for(running, timeout=15) == 1
    cancelled = (await events(redis, keys))[-1]
    assert (cancelled.TYPE, cancelled.reason) == ("task.cancelled", "cancelled by test")
    for pid in pids:
        await wait_until(lambda pid=pid: not pid_alive(pid), timeout_s=5)
    assert await pending(redis, keys) == 0


async def test_an_attempt_cancelled_before_it_starts_never_runs(
    adapter: Adapter,
    redis: Redis,
    keys: Keys,
    mirror: Mirror,
    tmp_path: Path,
) -> None:
    msg = message(mirror, f"touch {tmp_path}/ran")
    await redis.set(keys.cancel(msg.task_id, 1), "cancelled by api")
    await send(redis, keys, adapter, msg)
    await adapter.process_available()
    assert [e.TYPE for e in await events(redis, keys)] == ["task.cancelled"]
    assert not (tmp_path / "ran").exists()


async def test_the_agent_sees_no_credentials_and_a_private_home(
    adapter: Adapter,
    redis: Redis,
    keys: Keys,
    mirror: Mirror,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SWARM_REDIS_URL", "redis://:do-not-leak@127.0.0.1:1/0")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-do-not-leak")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-leak")
    await send(redis, keys, adapter, message(mirror, f"env > {tmp_path}/env"))
    await adapter.process_available()
    env = dict(
        line.split("=", 1) for line in (tmp_path / "env").read_text().splitlines() if "=" in line
    )
    assert "do-not-leak" not in (tmp_path / "env").read_text()
    assert env["SWARM_TASK_KEY"] == "t1" and env["SWARM_ATTEMPT"] == "1"
    assert env["HOME"].endswith(f"homes/{mirror.session_id}/t1-1")
    assert "PATH" in env


async def test_heartbeats_while_running(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror, tmp_path: Path
) -> None:
    await send(redis, keys, adapter, message(mirror, f"touch {tmp_path}/go; sleep 0.8"))
    await adapter.process_available()
    types = [e.TYPE for e in await events(redis, keys, heartbeats=True)]
    assert types[0] == "task.started" and types[-1] == "task.succeeded"
    assert types.count("task.heartbeat") >= 2


@contextlib.asynccontextmanager
async def serving(adapter: Adapter) -> AsyncIterator[asyncio.Task[None]]:
    """`adapter.run()` in the background; never left running when the test ends."""
    task = asyncio.create_task(adapter.run())
    try:
        yield task
    finally:
        adapter.stop()
        if not task.done():
            adapter._abandon.set()
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_stop_lets_the_running_attempt_finish(
    adapter: Adapter,
    redis: Redis,
    keys: Keys,
    mirror: Mirror,
    tmp_path: Path,
) -> None:
    await send(redis, keys, adapter, message(mirror, f"touch {tmp_path}/go; sleep 0.5"))
    async with serving(adapter) as task:
        await wait_until(lambda: (tmp_path / "go").exists())
        adapter.stop()
        await asyncio.wait_for(asyncio.shield(task), timeout=15)
    types = [e.TYPE for e in await events(redis, keys)]
    assert types[0] == "worker.online" and types[-1] == "worker.offline"
    assert "task.succeeded" in types
    assert not await redis.exists(keys.worker("shell-test"))


async def test_stop_hands_back_an_attempt_that_outlives_the_grace_period(
    adapter: Adapter,
    redis: Redis,
    keys: Keys,
    mirror: Mirror,
    tmp_path: Path,
) -> None:
    adapter.settings.shutdown_grace_s = 0.2
    await send(redis, keys, adapter, message(mirror, f"touch {tmp_path}/go; sleep 60"))

    async def registered() -> bool:
        return bool(await redis.exists(keys.worker("shell-test")))

    async with serving(adapter) as task:
        await wait_until(lambda: (tmp_path / "go").exists())
        await wait_until_async(registered)
        adapter.stop()
        await asyncio.wait_for(asyncio.shield(task), timeout=15)
    outcome = [e for e in await events(redis, keys) if e.TYPE == "task.cancelled"]
    assert [e.reason for e in outcome] == ["adapter shutting down"]
    assert await pending(redis, keys) == 0


async def test_an_unexpected_adapter_error_is_reported_not_left_hanging(
    adapter: Adapter,
    redis: Redis,
    keys: Keys,
    mirror: Mirror,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken_prepare(message: TaskMessage) -> Path:
        raise PermissionError("workspace not writable")

    monkeypatch.setattr(adapter.worktrees, "prepare", broken_prepare)
    await send(redis, keys, adapter, message(mirror, "true"))
    assert await adapter.process_available() == 1
    failed = (await events(redis, keys))[-1]
    assert (failed.TYPE, failed.reason) == ("task.failed", "adapter_error")
    assert await pending(redis, keys) == 0


async def test_binary_output_reaches_the_event_without_nul(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror
) -> None:
    await send(redis, keys, adapter, message(mirror, "printf 'a\\0b'; exit 1"))
    await adapter.process_available()
    failed = (await events(redis, keys))[-1]
    assert failed.output_tail == "a\ufffdb"


async def test_a_message_read_while_stopping_is_handed_back_unstarted(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror, tmp_path: Path
) -> None:
    await send(redis, keys, adapter, message(mirror, f"touch {tmp_path}/ran"))
    adapter.stop()
    assert await adapter.process_available() == 1
    assert [e.TYPE for e in await events(redis, keys)] == ["task.cancelled"]
    assert not (tmp_path / "ran").exists()
    assert await pending(redis, keys) == 0


async def test_a_shell_command_too_long_for_one_argument_runs_from_a_file(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror
) -> None:
    script = "\n".join(["# " + "x" * 200] * 800 + ["echo long > long.txt"])  # ~160 KB
    await send(redis, keys, adapter, message(mirror, script))
    await adapter.process_available()
    done = (await events(redis, keys))[-1]
    assert done.TYPE == "task.succeeded", getattr(done, "error", "")
    assert done.changed_files == ["long.txt"]
