"""What keeps an attempt from running twice or being lost, on real Redis, git and processes:
claims and leases, fencing, taking over what dead adapters left pending, dead-lettering,
and the system mode (drain, emergency stop)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from swarm_adapter.runners.shell import ShellRunner
from swarm_adapter.settings import AdapterSettings
from swarm_adapter.worker import Adapter
from swarm_common import leases
from swarm_common.leases import Lease, LeaseState
from swarm_common.messages import TaskFailed
from swarm_common.procs import kill_strays
from swarm_common.streams import ADAPTERS_GROUP, Keys, decode
from swarm_common.system import SystemMode, SystemState, publish_mode
from tests.adapter.helpers import Mirror, events, message, pending, send
from tests.common.test_procs import carrying
from tests.conftest import branch_commit
from tests.waiting import pid_alive, pid_in, wait_until, wait_until_async

LEASE_S = 1.5
CLAIM_IDLE_MS = 300
MAX_DELIVERIES = 2


@pytest.fixture
def adapter_settings(adapter_settings: AdapterSettings) -> AdapterSettings:
    """Tight timings (the `adapter` fixture builds on these), so that leases lapse, entries
    go idle and mode changes are seen within a fraction of a second."""
    return adapter_settings.model_copy(
        update={
            "cancel_poll_interval_s": 0.1,
            "control_poll_interval_s": 0.1,
            "worker_ttl_s": 0.6,
            "lease_s": LEASE_S,
            "claim_idle_ms": CLAIM_IDLE_MS,
            "max_deliveries": MAX_DELIVERIES,
            "read_block_ms": 100,
        }
    )


async def dead_letters(redis: Redis, keys: Keys) -> list[tuple[bytes, dict[bytes, bytes]]]:
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(keys.dead)  # type: ignore[assignment]
    return entries


async def lease_of(redis: Redis, keys: Keys, msg: Any) -> Lease:
    [found] = await leases.inspect(redis, keys, [(msg.task_id, msg.attempt)])
    return found


async def ghost_reads(redis: Redis, keys: Keys, consumer: str = "ghost") -> bytes:
    """An adapter that reads the next task message and dies before acknowledging it."""
    reply: Any = await redis.xreadgroup(
        ADAPTERS_GROUP, consumer, {keys.tasks("shell"): ">"}, count=1
    )
    entry_id: bytes = reply[0][1][0][0]
    return entry_id


def until_exists(path: Path) -> str:
    """A shell loop that runs until the test creates `path`."""
    return f"while [ ! -e {path} ]; do sleep 0.05; done"


async def holds_for(condition: Callable[[], Awaitable[bool]], seconds: float) -> None:
    """Assert that `condition` (async) stays true for a whole window: how a test shows that
    something does *not* happen."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert await condition()
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def background(
    work: Coroutine[Any, Any, Any], *markers: str
) -> AsyncIterator[asyncio.Task[Any]]:
    """`work` as a task beside the test; cancelled if the test ends first. Should the test
    fail, whatever carries one of `markers` is killed first: a detached process that holds
    the agent's output keeps its attempt from ending."""
    task = asyncio.create_task(work)
    try:
        yield task
    except BaseException:
        for marker in markers:
            kill_strays(marker)
        raise
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=15)


@contextlib.asynccontextmanager
async def serving(adapter: Adapter, *markers: str) -> AsyncIterator[asyncio.Task[None]]:
    """`adapter.run()` in the background, stopped when the test ends. Should the test fail,
    its attempts are killed first rather than drained; see `background` for `markers`."""
    task = asyncio.create_task(adapter.run())
    try:
        yield task
    except BaseException:
        adapter.kill_all("the test failed")
        for marker in markers:
            kill_strays(marker)
        raise
    finally:
        adapter.stop()
        await asyncio.wait([task], timeout=15)
        if not task.done():
            adapter._abandon.set()
            task.cancel()
            await asyncio.wait([task], timeout=15)


# -- claims and leases -----------------------------------------------------------------------


async def test_an_attempt_is_claimed_once_and_only_its_holder_renews_or_finishes_it(
    redis: Redis, keys: Keys
) -> None:
    task_id = uuid.uuid4()
    common: dict[str, Any] = {"task_id": task_id, "attempt": 1}
    assert await leases.inspect(redis, keys, [(task_id, 1)]) == [Lease(LeaseState.UNCLAIMED, None)]
    assert await leases.claim(redis, keys, **common, worker="a", lease_s=LEASE_S, claim_ttl_s=60)
    assert not await leases.claim(
        redis, keys, **common, worker="b", lease_s=LEASE_S, claim_ttl_s=60
    )
    assert await redis.get(keys.claim(task_id, 1)) == b"a"
    assert 0 < await redis.pttl(keys.lease(task_id, 1)) <= LEASE_S * 1000
    assert not await leases.renew(redis, keys, **common, worker="b", lease_s=60)
    await leases.finish(redis, keys, **common, worker="b", done_ttl_s=60)
    assert await leases.inspect(redis, keys, [(task_id, 1)]) == [Lease(LeaseState.HELD, "a")]

    assert await leases.renew(redis, keys, **common, worker="a", lease_s=60)
    assert await redis.pttl(keys.lease(task_id, 1)) > LEASE_S * 1000
    # Another attempt of the same task is a claim of its own.
    assert await leases.claim(
        redis, keys, task_id=task_id, attempt=2, worker="b", lease_s=LEASE_S, claim_ttl_s=60
    )

    await redis.delete(keys.lease(task_id, 1))
    assert await leases.inspect(redis, keys, [(task_id, 1), (task_id, 2)]) == [
        Lease(LeaseState.EXPIRED, "a"),
        Lease(LeaseState.HELD, "b"),
    ]
    assert not await leases.renew(redis, keys, **common, worker="a", lease_s=60)
    await leases.finish(redis, keys, **common, worker="a", done_ttl_s=60)
    assert await leases.inspect(redis, keys, [(task_id, 1)]) == [Lease(LeaseState.DONE, "a")]
    assert await redis.get(keys.claim(task_id, 1)) == b"done:a"
    assert await leases.inspect(redis, keys, []) == []


async def test_the_lease_is_renewed_while_a_long_task_runs_and_done_after_it(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror, tmp_path: Path
) -> None:
    msg = message(mirror, f"touch {tmp_path}/go; {until_exists(tmp_path / 'release')}")
    lease_key = keys.lease(msg.task_id, 1)
    await send(redis, keys, adapter, msg)
    async with background(adapter.process_available()) as running:
        await wait_until(lambda: (tmp_path / "go").exists())
        started = time.monotonic()  # the lease was taken before this
        ttls: list[int] = []

        async def outlived_two_leases() -> bool:
            ttls.append(await redis.pttl(lease_key))
            return time.monotonic() - started > 2 * LEASE_S

        await wait_until_async(outlived_two_leases, interval_s=0.05)
        assert all(0 < ttl <= LEASE_S * 1000 for ttl in ttls), ttls
        assert sum(later > earlier for earlier, later in itertools.pairwise(ttls)) >= 3, ttls
        assert await lease_of(redis, keys, msg) == Lease(LeaseState.HELD, "shell-test")

        (tmp_path / "release").touch()
        assert await asyncio.wait_for(running, timeout=15) == 1
    assert (await events(redis, keys))[-1].TYPE == "task.succeeded"
    assert await lease_of(redis, keys, msg) == Lease(LeaseState.DONE, "shell-test")
    assert not await redis.exists(lease_key)


async def test_an_attempt_that_loses_its_lease_is_stopped_and_commits_nothing(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror, tmp_path: Path
) -> None:
    msg = message(mirror, f"echo work > work.txt; echo $$ > {tmp_path}/main; sleep 60")
    await send(redis, keys, adapter, msg)
    async with background(adapter.process_available()) as running:
        main = await pid_in(tmp_path / "main")
        await redis.delete(keys.lease(msg.task_id, 1))  # it lapsed; the reaper moved on
        assert await asyncio.wait_for(running, timeout=15) == 1
    *_, outcome = reported = await events(redis, keys)
    assert (outcome.TYPE, outcome.reason) == ("task.cancelled", "lease_lost")
    assert not {"task.succeeded", "task.failed"} & {e.TYPE for e in reported}
    assert branch_commit(mirror.path, msg.branch) == mirror.base
    await wait_until(lambda: not pid_alive(main), timeout_s=5)
    assert await pending(redis, keys) == 0


async def test_a_running_attempt_keeps_its_entry_so_a_peer_does_not_take_it_over(
    adapter: Adapter,
    adapter_settings: AdapterSettings,
    redis: Redis,
    keys: Keys,
    mirror: Mirror,
    tmp_path: Path,
) -> None:
    peer = Adapter(
        settings=adapter_settings.model_copy(update={"worker_name": "peer"}),
        redis=redis,
        runner=ShellRunner(),
    )
    prompt = f"echo ran >> {tmp_path}/runs; {until_exists(tmp_path / 'release')}"
    await send(redis, keys, adapter, message(mirror, prompt))
    async with background(adapter.process_available()) as running:
        await wait_until(lambda: (tmp_path / "runs").exists())

        async def peer_takes_nothing() -> bool:
            return not await peer.reclaim()

        await holds_for(peer_takes_nothing, 3 * CLAIM_IDLE_MS / 1000)
        (tmp_path / "release").touch()
        assert await asyncio.wait_for(running, timeout=15) == 1
    assert (tmp_path / "runs").read_text() == "ran\n"
    assert peer.counts["reclaimed"] == 0
    reported = await events(redis, keys)
    assert reported[-1].TYPE == "task.succeeded"
    assert {e.worker for e in reported} == {"shell-test"}


# -- entries other adapters left pending -----------------------------------------------------


async def test_an_entry_a_dead_adapter_read_is_taken_over_once_idle_and_run(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror, tmp_path: Path
) -> None:
    msg = message(mirror, f"echo ran >> {tmp_path}/runs")
    await send(redis, keys, adapter, msg)
    await ghost_reads(redis, keys)
    assert not await adapter.reclaim()  # not idle long enough: its reader may be alive
    await wait_until_async(adapter.reclaim, timeout_s=10)
    assert (tmp_path / "runs").read_text() == "ran\n"
    # Delivered twice (ghost, then us): at the limit, not over it.
    started, ended = await events(redis, keys)
    assert [started.TYPE, ended.TYPE] == ["task.started", "task.succeeded"]
    assert started.deliveries == 2  # the orchestrator counts it (`swarm_reclaims_total`)
    assert adapter.counts["reclaimed"] == 1
    assert await pending(redis, keys) == 0
    assert await lease_of(redis, keys, msg) == Lease(LeaseState.DONE, "shell-test")


async def test_an_entry_whose_attempt_a_dead_adapter_claimed_is_acked_not_run(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror, tmp_path: Path
) -> None:
    msg = message(mirror, f"touch {tmp_path}/ran")
    await send(redis, keys, adapter, msg)
    await ghost_reads(redis, keys)
    await leases.claim(
        redis,
        keys,
        task_id=msg.task_id,
        attempt=1,
        worker="ghost",
        lease_s=LEASE_S,
        claim_ttl_s=600,
    )
    await wait_until_async(adapter.reclaim, timeout_s=10)
    assert adapter.counts["duplicate"] == 1
    assert not (tmp_path / "ran").exists()
    assert await events(redis, keys) == []
    assert await pending(redis, keys) == 0
    assert await redis.get(keys.claim(msg.task_id, 1)) == b"ghost"  # left to the reaper


async def test_an_entry_delivered_too_often_is_dead_lettered_and_its_task_failed(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror, tmp_path: Path
) -> None:
    msg = message(mirror, f"touch {tmp_path}/ran")
    await send(redis, keys, adapter, msg)
    entry_id = await ghost_reads(redis, keys)
    await redis.xclaim(keys.tasks("shell"), ADAPTERS_GROUP, "ghost-2", 0, [entry_id])
    await wait_until_async(adapter.reclaim, timeout_s=10)  # the third delivery
    [(_, dead)] = await dead_letters(redis, keys)
    assert dead[b"entry_id"] == entry_id
    assert dead[b"reason"] == f"delivered 3 times (limit {MAX_DELIVERIES})".encode()
    assert decode({b"env": dead[b"raw"]}).message == msg
    [failed] = await events(redis, keys)
    assert (failed.TYPE, failed.reason) == ("task.failed", "dead_lettered")
    assert (failed.task_id, failed.attempt) == (msg.task_id, 1)
    assert keys.dead in failed.error
    assert not (tmp_path / "ran").exists()
    assert await pending(redis, keys) == 0
    assert await lease_of(redis, keys, msg) == Lease(LeaseState.UNCLAIMED, None)


@pytest.mark.parametrize("repo", ["repos/no-such-session.git", ".", "../outside"])
async def test_a_task_of_an_unknown_repository_is_dead_lettered_not_run(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror, tmp_path: Path, repo: str
) -> None:
    (tmp_path / "outside").mkdir()
    msg = message(mirror, f"touch {tmp_path}/ran", repo=repo)
    await send(redis, keys, adapter, msg)
    await send(redis, keys, adapter, message(mirror, "true", key="next"))
    assert await adapter.process_available() == 2
    [(_, dead)] = await dead_letters(redis, keys)
    assert dead[b"reason"].startswith(b"unknown task")
    assert decode({b"env": dead[b"raw"]}).message == msg
    assert not (tmp_path / "ran").exists()
    reported = await events(redis, keys)
    assert [(e.TYPE, e.task_id == msg.task_id) for e in reported] == [
        ("task.failed", True),  # a task the orchestrator knows fails rather than waits
        ("task.started", False),
        ("task.succeeded", False),
    ]
    assert isinstance(reported[0], TaskFailed) and reported[0].reason == "dead_lettered"
    assert await lease_of(redis, keys, msg) == Lease(LeaseState.UNCLAIMED, None)
    assert await pending(redis, keys) == 0


# -- system mode -----------------------------------------------------------------------------


async def set_mode(redis: Redis, keys: Keys, mode: SystemMode) -> None:
    await publish_mode(redis, keys, SystemState(mode=mode, by="test"))


async def unread(redis: Redis, keys: Keys) -> int:
    """Entries of the task stream that no adapter has read yet."""
    [group] = await redis.xinfo_groups(keys.tasks("shell"))
    return int(group["lag"])


def reports_mode(redis: Redis, keys: Keys, mode: SystemMode) -> Callable[[], Awaitable[bool]]:
    """Whether the adapter's liveness key says it is in `mode`."""

    async def check() -> bool:
        raw = await redis.hget(keys.worker("shell-test"), "mode")
        return raw == mode.value.encode()

    return check


@pytest.fixture
async def adapter_redis(redis_url: str, redis_prefix: str) -> AsyncIterator[Redis]:
    """A connection pool of the adapter's own, named, so that the test can see in `CLIENT
    LIST` whether the adapter is blocked reading its stream."""
    client = Redis.from_url(redis_url, decode_responses=False, client_name=redis_prefix)
    yield client
    await client.aclose()


async def test_a_draining_adapter_takes_no_new_task_until_running_resumes(
    adapter_settings: AdapterSettings,
    adapter_redis: Redis,
    redis: Redis,
    keys: Keys,
    mirror: Mirror,
    tmp_path: Path,
    redis_prefix: str,
) -> None:
    adapter = Adapter(settings=adapter_settings, redis=adapter_redis, runner=ShellRunner())

    async def parked() -> bool:
        """Draining, and no read of the task stream in flight (one that began before the
        mode changed could still take the message)."""
        if adapter.mode != SystemMode.DRAINING:
            return False
        clients: list[dict[str, Any]] = await redis.client_list()
        return not any(c["name"] == redis_prefix and "b" in c["flags"] for c in clients)

    async def untouched() -> bool:
        return await unread(redis, keys) == 1

    async def succeeded() -> bool:
        return "task.succeeded" in [e.TYPE for e in await events(redis, keys)]

    async with serving(adapter):
        await wait_until_async(reports_mode(redis, keys, SystemMode.RUNNING))
        await set_mode(redis, keys, SystemMode.DRAINING)
        await wait_until_async(parked)
        await wait_until_async(reports_mode(redis, keys, SystemMode.DRAINING))
        await send(redis, keys, adapter, message(mirror, f"touch {tmp_path}/ran"))
        await holds_for(untouched, 1.0)  # ten reads' and ten mode polls' worth
        await set_mode(redis, keys, SystemMode.RUNNING)
        await wait_until_async(succeeded)
    assert (tmp_path / "ran").exists()
    assert "task.cancelled" not in [e.TYPE for e in await events(redis, keys)]


async def test_an_emergency_stop_kills_the_running_task_and_reports_it_cancelled(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror, tmp_path: Path
) -> None:
    prompt = (
        f"echo $$ > {tmp_path}/main; sleep 300 & echo $! > {tmp_path}/bg; "
        f"setsid sleep 301 & echo $! > {tmp_path}/detached; wait"
    )
    msg = message(mirror, prompt, timeout_s=600)
    marker = f"SWARM_WORKTREE={adapter.worktrees.path(msg)}"

    async def cancelled() -> bool:
        return "task.cancelled" in [e.TYPE for e in await events(redis, keys)]

    async def still_unread() -> bool:
        return await unread(redis, keys) == 1

    await send(redis, keys, adapter, msg)
    async with serving(adapter, marker):
        names = ("main", "bg", "detached")
        pids = [await pid_in(tmp_path / n) for n in names]
        # A process caught in the middle of its exec has no environment to read for an
        # instant (its /proc entry says nothing): look again until all three are seen.
        await wait_until(lambda: set(pids) <= set(carrying(marker)), timeout_s=5)
        await set_mode(redis, keys, SystemMode.STOPPED)
        await wait_until_async(cancelled)
        [outcome] = [e for e in await events(redis, keys) if e.TYPE == "task.cancelled"]
        assert (outcome.task_id, outcome.reason) == (msg.task_id, "emergency stop")
        await wait_until(lambda: not carrying(marker), timeout_s=5)
        assert not any(pid_alive(pid) for pid in pids)
        # Still stopped: a new task waits.
        await send(redis, keys, adapter, message(mirror, f"touch {tmp_path}/ran", key="t2"))
        await holds_for(still_unread, 0.5)
    assert not (tmp_path / "ran").exists()


async def test_emergency_stop_kills_agents_at_once_and_stops_the_adapter(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror, tmp_path: Path
) -> None:
    adapter.settings.shutdown_grace_s = 30.0  # a drain would wait this long; this must not
    msg = message(
        mirror, f"setsid sleep 301 & echo $! > {tmp_path}/detached; sleep 300", timeout_s=600
    )
    marker = f"SWARM_WORKTREE={adapter.worktrees.path(msg)}"
    await send(redis, keys, adapter, msg)
    async with serving(adapter, marker) as task:
        detached = await pid_in(tmp_path / "detached")
        begun = time.monotonic()
        adapter.emergency_stop()
        await asyncio.wait_for(asyncio.shield(task), timeout=10)
        assert time.monotonic() - begun < 5
    assert not pid_alive(detached) and not carrying(marker)
    *_, cancelled, offline = await events(redis, keys)
    assert (cancelled.TYPE, cancelled.reason) == ("task.cancelled", "emergency stop")
    assert offline.TYPE == "worker.offline"
    assert await pending(redis, keys) == 0
