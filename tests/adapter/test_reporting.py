"""The adapter's events out (`reporting`): each one about an attempt carries the proof made
with the attempt's key, and the key never reaches the agent, its files or a log line."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from redis.asyncio import Redis

from swarm_adapter.worker import Adapter
from swarm_common import proofs
from swarm_common.streams import PROOF_FIELD, Keys, decode
from tests.adapter.helpers import Mirror, message, send
from tests.waiting import wait_until_async


async def _entries(redis: Redis, keys: Keys) -> list[dict[bytes, bytes]]:
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(keys.events)  # type: ignore[assignment]
    return [fields for _, fields in entries]


def _files_under(folder: Path) -> list[bytes]:
    return [p.read_bytes() for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]


async def test_every_event_of_an_attempt_is_proven_and_its_agent_never_sees_the_key(
    adapter: Adapter,
    redis: Redis,
    keys: Keys,
    mirror: Mirror,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    key = proofs.new_key()
    seen, go = tmp_path / "seen", tmp_path / "go"
    # The agent takes what it can reach: its environment, the command lines of itself and
    # its parents, its home folder and worktree; then it waits while its heartbeat beats.
    prompt = (
        f"mkdir -p {seen} && env > {seen}/env && "
        f"for p in $$ $PPID; do cat /proc/$p/cmdline /proc/$p/environ; done > {seen}/procs; "
        f'cp -r "$HOME" {seen}/home && cp -r . {seen}/worktree && '
        f"while [ ! -e {go} ]; do sleep 0.05; done; echo ok > f"
    )
    msg = message(mirror, prompt, event_key=key)
    await send(redis, keys, adapter, msg)
    run = asyncio.create_task(adapter.process_available())

    async def beat() -> bool:
        return any(decode(f).type == "task.heartbeat" for f in await _entries(redis, keys))

    try:
        await wait_until_async(beat, timeout_s=10)
    finally:
        go.touch()
        assert await asyncio.wait_for(run, timeout=30) == 1

    entries = await _entries(redis, keys)
    about_attempt = [f for f in entries if decode(f).type.startswith("task.")]
    types = [decode(f).type for f in about_attempt]
    assert types[0] == "task.started" and types[-1] == "task.succeeded"
    assert "task.heartbeat" in types  # the heartbeat's events are proven too
    for fields in about_attempt:
        envelope = decode(fields)
        assert proofs.verify(key, envelope.raw, envelope.proof), envelope.type
        assert key.encode() not in fields[b"env"]
    assert all(PROOF_FIELD.encode() not in f for f in entries if f not in about_attempt)
    reached = _files_under(seen)
    assert reached and not any(key.encode() in data for data in reached)
    assert not any(key in repr(record.__dict__) for record in caplog.records)
    assert adapter.reporter._event_keys == {}  # forgotten once the attempt is reported


async def test_a_message_without_a_key_runs_and_its_events_go_out_unproven(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror
) -> None:
    """From an orchestrator older than the proofs: it does not check them either."""
    await send(redis, keys, adapter, message(mirror, "true"))
    assert await adapter.process_available() == 1
    entries = await _entries(redis, keys)
    assert [decode(f).type for f in entries][-1] == "task.succeeded"
    assert all(PROOF_FIELD.encode() not in f for f in entries)


async def test_the_failure_of_a_refused_message_is_proven_with_its_key(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror
) -> None:
    """A message the adapter cannot run fails its attempt; the failure is the attempt's own
    report, so it carries the attempt's proof (and the orchestrator applies it)."""
    key = proofs.new_key()
    msg = message(mirror, "true", event_key=key, repo="repos/elsewhere.git")
    await send(redis, keys, adapter, msg)
    assert await adapter.process_available() == 1
    [fields] = [f for f in await _entries(redis, keys) if decode(f).type == "task.failed"]
    envelope = decode(fields)
    assert getattr(envelope.message, "reason", None) == "dead_lettered"
    assert proofs.verify(key, envelope.raw, envelope.proof)
