"""The start-up watchdog, on the adapter's side, on real Redis, git and processes: an agent
CLI that dies before its first event fails its attempt with `startup_failed` and its last
output (redacted); an adapter whose last attempts all failed so leaves rotation (no more
messages, its liveness key gone at once, what it runs handed back, one error line, exit
status 3), and the messages it did not take wait for other adapters. Tasks that fail on
their own, with output or without, never take an adapter out of rotation."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from swarm_adapter.runners.claude import ClaudeRunner
from swarm_adapter.runners.shell import ShellRunner
from swarm_adapter.settings import AdapterSettings
from swarm_adapter.watchdog import OUT_OF_ROTATION_EXIT, STARTUP_FAILED, StartWatch
from swarm_adapter.worker import Adapter
from swarm_common.messages import TaskCancelled, TaskFailed, TaskMessage, TaskSucceeded
from swarm_common.redaction import REDACTED
from swarm_common.streams import ADAPTERS_GROUP, Keys, decode, encode
from tests.adapter.helpers import Mirror, events, message, send
from tests.waiting import wait_until, wait_until_async

KEY = "sk-ant-watchdog-key-0123456789"
INIT = '{"type":"system","subtype":"init","model":"m"}'
BROKEN = (
    'echo "claude: error while loading shared libraries: libnode.so.115 (key $ANTHROPIC_API_KEY)"'
    " >&2\nexit 127\n"
)
"""A CLI that cannot start: what it says goes to stderr, and it exits at once."""


def fake_claude(folder: Path, body: str) -> Path:
    """A `claude` that answers `--version` (so the adapter starts) and then runs `body`; in
    a folder of its own (`bin/`), apart from the workspace, so that a sandbox shows it."""
    path = folder / "bin" / "claude"
    path.parent.mkdir(exist_ok=True)
    path.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "--version" ]; then echo "2.1.197 (Claude Code)"; exit 0; fi\n' + body
    )
    path.chmod(0o755)
    return path


def claude_adapter(
    adapter_settings: AdapterSettings, redis: Redis, script: Path, **settings: Any
) -> Adapter:
    chosen = adapter_settings.model_copy(
        update={
            "agent": "claude",
            "worker_name": "claude-test",
            "claude_path": script,
            "max_start_failures": 2,
            **settings,
        }
    )
    runner = ClaudeRunner(chosen, {"PATH": os.environ["PATH"], "ANTHROPIC_API_KEY": KEY})
    return Adapter(settings=chosen, redis=redis, runner=runner)


async def submit(redis: Redis, keys: Keys, adapter: Adapter, msg: TaskMessage) -> None:
    await adapter.setup()
    await redis.xadd(keys.tasks("claude"), encode(msg))  # type: ignore[arg-type]


async def unread(redis: Redis, keys: Keys) -> int:
    """Entries of the claude task stream that no adapter has read yet."""
    [group] = await redis.xinfo_groups(keys.tasks("claude"))
    return int(group["lag"])


async def held(redis: Redis, keys: Keys) -> int:
    """Entries of the claude task stream read but not acknowledged."""
    return int((await redis.xpending(keys.tasks("claude"), ADAPTERS_GROUP))["pending"])


@contextlib.asynccontextmanager
async def served(adapter: Adapter) -> AsyncIterator[asyncio.Task[None]]:
    """`adapter.run()` beside the test; stopped, its agents killed, if it still runs when
    the test ends."""
    task = asyncio.create_task(adapter.run())
    try:
        yield task
    finally:
        if not task.done():
            adapter.kill_all("the test ended")
            adapter.stop()
            await asyncio.wait([task], timeout=15)


@pytest.mark.parametrize(
    ("body", "how", "said"),
    [
        (BROKEN, "exited with code 127", "libnode.so.115"),
        ("exit 1\n", "exited with code 1", "its last output: (nothing)"),
        ("kill -KILL $$\n", "was killed by signal 9", "its last output: (nothing)"),
    ],
)
@pytest.mark.parametrize("sandbox", ["off", "auto"])
async def test_an_agent_cli_that_dies_before_its_first_event_fails_at_start(
    adapter_settings: AdapterSettings,
    redis: Redis,
    keys: Keys,
    mirror: Mirror,
    tmp_path: Path,
    body: str,
    how: str,
    said: str,
    sandbox: str,
) -> None:
    """The same in the sandbox (`auto`, where bubblewrap works): what it said, and the
    signal it died of (bwrap's exit status 128+N read back as the signal)."""
    adapter = claude_adapter(adapter_settings, redis, fake_claude(tmp_path, body), sandbox=sandbox)
    await submit(redis, keys, adapter, message(mirror, "hi", agent="claude"))
    assert await adapter.process_available() == 1

    failed = (await events(redis, keys))[-1]
    assert (failed.TYPE, failed.reason) == ("task.failed", STARTUP_FAILED)
    script = tmp_path / "bin" / "claude"
    assert f"the claude CLI ({script}) {how} before its first event" in failed.error
    assert said in failed.error
    assert KEY not in failed.error and KEY not in failed.output_tail
    if body == BROKEN:
        assert f"(key {REDACTED})" in failed.error
    assert (adapter.starts.streak, adapter.retired) == (1, None)  # one of two, so far


async def test_a_cli_that_said_something_before_it_failed_keeps_its_adapter_in_rotation(
    adapter_settings: AdapterSettings, redis: Redis, keys: Keys, mirror: Mirror, tmp_path: Path
) -> None:
    """It got going (its first event came), then failed: the task's failure, not a broken
    adapter's, however often it happens."""
    adapter = claude_adapter(
        adapter_settings, redis, fake_claude(tmp_path, f"echo '{INIT}'\nexit 1\n")
    )
    for i in range(3):
        await submit(redis, keys, adapter, message(mirror, "hi", key=f"t{i}", agent="claude"))
    assert await adapter.process_available() == 3
    failed = [e for e in await events(redis, keys) if e.TYPE == "task.failed"]
    assert [e.reason for e in failed] == ["exit_code"] * 3
    assert (adapter.starts.streak, adapter.retired) == (0, None)


async def test_a_healthy_adapter_whose_tasks_fail_never_leaves_rotation(
    adapter_settings: AdapterSettings,
    redis: Redis,
    keys: Keys,
    mirror: Mirror,
    tmp_path: Path,
) -> None:
    """Shell tasks that fail after output, or with none (`exit 1`: the command's own answer;
    bash did start), are the tasks' failures: the adapter serves on."""
    settings = adapter_settings.model_copy(update={"max_start_failures": 2})
    adapter = Adapter(settings=settings, redis=redis, runner=ShellRunner())
    prompts = ["echo trying; exit 1", "exit 1", "false", "echo half >&2; exit 3"]

    async def reported(n: int) -> bool:
        done = [e for e in await events(redis, keys) if isinstance(e, TaskFailed | TaskSucceeded)]
        return len(done) >= n

    async with served(adapter) as task:
        for i, prompt in enumerate(prompts):
            await send(redis, keys, adapter, message(mirror, prompt, key=f"t{i}"))
        await wait_until_async(lambda: reported(len(prompts)), timeout_s=30)
        await send(redis, keys, adapter, message(mirror, f"touch {tmp_path}/ran", key="ok"))
        await wait_until_async(lambda: reported(len(prompts) + 1), timeout_s=30)
        assert not task.done() and adapter.retired is None
        assert await redis.exists(keys.worker("shell-test")) == 1
    outcomes = [e for e in await events(redis, keys) if isinstance(e, TaskFailed | TaskSucceeded)]
    assert [getattr(e, "reason", "ok") for e in outcomes] == ["exit_code"] * 4 + ["ok"]
    assert (tmp_path / "ran").exists()


async def test_an_adapter_failing_every_start_leaves_rotation_and_hands_back_its_work(
    adapter_settings: AdapterSettings,
    redis: Redis,
    keys: Keys,
    mirror: Mirror,
    tmp_path: Path,
) -> None:
    """Two slots: while one runs a long attempt, the other's two attempts fail at start. The
    liveness key goes at once, the long attempt is handed back once the drain's grace is
    over, and a message sent after that waits, unread, for another adapter."""
    hanging = tmp_path / "hanging"
    body = f"case \"$*\" in *HANG-HERE*) echo '{INIT}'; touch {hanging}; exec sleep 300;; esac\n"
    script = fake_claude(tmp_path, body + BROKEN)
    adapter = claude_adapter(adapter_settings, redis, script, concurrency=2, shutdown_grace_s=5.0)
    liveness = keys.worker("claude-test")

    async with served(adapter) as task:
        await wait_until_async(lambda: redis.exists(liveness))
        long = message(mirror, "HANG-HERE", key="long", agent="claude", timeout_s=600)
        await submit(redis, keys, adapter, long)
        await wait_until(hanging.exists)
        for i in range(2):
            await submit(redis, keys, adapter, message(mirror, "hi", key=f"t{i}", agent="claude"))
        await wait_until(lambda: adapter.retired is not None)
        await submit(redis, keys, adapter, message(mirror, "hi", key="later", agent="claude"))
        await wait_until_async(lambda: _gone(redis, liveness))
        assert [r.message.task_key for r in adapter.in_flight] == ["long"]  # still draining
        await asyncio.wait_for(asyncio.shield(task), timeout=30)

    seen = await events(redis, keys)
    failed = [e for e in seen if isinstance(e, TaskFailed)]
    assert [e.reason for e in failed] == [STARTUP_FAILED] * 2, [e.TYPE for e in seen]
    [back] = [e for e in seen if isinstance(e, TaskCancelled)]
    assert (back.task_id, back.reason) == (long.task_id, "adapter shutting down")
    assert [e.TYPE for e in seen].count("worker.offline") == 1
    assert "libnode.so.115" in (adapter.retired or "") and KEY not in (adapter.retired or "")
    assert not await redis.exists(liveness)
    assert (await unread(redis, keys), await held(redis, keys)) == (1, 0)


async def _gone(redis: Redis, key: str) -> bool:
    return not await redis.exists(key)


async def test_the_adapter_process_out_of_rotation_exits_3_with_one_clear_line(
    redis: Redis,
    redis_url: str,
    redis_prefix: str,
    keys: Keys,
    workspace: Path,
    mirror: Mirror,
    tmp_path: Path,
) -> None:
    """`swarm adapter` itself: its log says what failed, how often and what to do; it exits
    3, so its supervisor notices; the message it never took is there for another adapter."""
    script = fake_claude(tmp_path, BROKEN)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARM_")}
    env.update(
        SWARM_REDIS_URL=redis_url,
        SWARM_REDIS_PREFIX=redis_prefix,
        SWARM_WORKSPACE=str(workspace),
        SWARM_WORKER_NAME="broken",
        SWARM_CLAUDE_PATH=str(script),
        SWARM_MAX_START_FAILURES="2",
        SWARM_READ_BLOCK_MS="100",
        ANTHROPIC_API_KEY=KEY,
        PYTHONUNBUFFERED="1",
    )
    log_path = tmp_path / "adapter.log"
    with log_path.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "swarm_cli", "adapter", "--agent", "claude"),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    try:
        await wait_until_async(
            lambda: redis.exists(keys.worker("broken")),
            timeout_s=60,
            message=lambda: log_path.read_text(),
        )
        sent = [message(mirror, "hi", key=f"t{i}", agent="claude") for i in range(3)]
        for msg in sent:
            await redis.xadd(keys.tasks("claude"), encode(msg))  # type: ignore[arg-type]
        code = await asyncio.wait_for(proc.wait(), timeout=60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    log = log_path.read_text()
    assert code == OUT_OF_ROTATION_EXIT == 3, log
    [line] = [x for x in log.splitlines() if "leaves rotation" in x]
    assert " ERROR " in line
    assert "its last 2 attempts all failed at start" in line
    assert "startup_failed: the claude CLI" in line and "libnode.so.115" in line
    assert "SWARM_CLAUDE_PATH" in line and "restart the adapter" in line
    assert KEY not in log
    assert not await redis.exists(keys.worker("broken"))
    failed = [e for e in await events(redis, keys) if isinstance(e, TaskFailed)]
    assert [(e.task_id, e.reason) for e in failed] == [
        (m.task_id, STARTUP_FAILED) for m in sent[:2]
    ]
    assert (await unread(redis, keys), await held(redis, keys)) == (1, 0)
    reply: Any = await redis.xreadgroup(ADAPTERS_GROUP, "other", {keys.tasks("claude"): ">"})
    [(_, fields)] = reply[0][1]
    left = decode(fields).message
    assert isinstance(left, TaskMessage) and left.task_id == sent[2].task_id


def test_only_start_failures_in_a_row_count() -> None:
    watch = StartWatch(limit=3)
    common: dict[str, Any] = {
        "session_id": "00000000-0000-4000-8000-000000000001",
        "task_id": "00000000-0000-4000-8000-000000000002",
        "attempt": 1,
        "worker": "w",
    }
    start = TaskFailed(**common, reason=STARTUP_FAILED, error="boom")
    assert [watch.note(start), watch.note(start)] == [False, False]
    assert watch.note(TaskCancelled(**common, reason="adapter shutting down")) is False
    assert watch.streak == 2  # a cancelled attempt says nothing either way
    assert watch.note(TaskFailed(**common, reason="exit_code")) is False
    assert watch.streak == 0  # a task's own failure ends the streak
    for reason in ("worktree_error", "adapter_error"):
        assert watch.note(TaskFailed(**common, reason=reason, error="x")) is False
    assert watch.note(start) is True
    assert watch.last == f"{STARTUP_FAILED}: boom"
    never = StartWatch(limit=0)
    assert not any(never.note(start) for _ in range(10))
