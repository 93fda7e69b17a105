"""The stream protocol: names, the versioned envelope, dead letters."""

from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis

from swarm_common.messages import (
    MESSAGE_TYPES,
    TaskFailed,
    TaskMessage,
    TaskStarted,
    WorkerOnline,
)
from swarm_common.streams import (
    ENVELOPE_FIELD,
    DecodeError,
    Keys,
    dead_letter,
    decode,
    encode,
    ensure_group,
)


def task_message(**overrides: object) -> TaskMessage:
    fields: dict[str, object] = {
        "session_id": uuid.uuid4(),
        "task_id": uuid.uuid4(),
        "task_key": "build",
        "attempt": 1,
        "agent": "shell",
        "title": "Build",
        "prompt": "make",
        "repo": "repos/x.git",
        "base_commit": "a" * 40,
        "branch": "swarm/x/task/build",
        "timeout_s": 60,
    }
    fields.update(overrides)
    return TaskMessage(**fields)  # type: ignore[arg-type]


def test_names_live_under_the_prefix() -> None:
    keys = Keys()
    task_id = uuid.UUID(int=7)
    assert keys.tasks("claude") == "swarm:tasks:claude"
    assert keys.events == "swarm:events"
    assert keys.dead == "swarm:dead"
    assert keys.worker("w1") == "swarm:worker:w1"
    assert keys.cancel(task_id, 2) == f"swarm:cancel:{task_id}:2"
    assert Keys("other").events == "other:events"


def test_round_trip_keeps_type_id_and_payload() -> None:
    message = task_message(skills=["py"], settings={"k": [1, 2]})
    fields = encode(message, envelope_id="env-1")
    envelope = decode(fields)
    assert envelope.type == "task.run"
    assert envelope.id == "env-1"
    assert envelope.message == message
    body = json.loads(fields[ENVELOPE_FIELD])
    assert body["v"] == 1 and set(body) == {"v", "type", "id", "ts", "payload"}


def test_every_message_type_round_trips() -> None:
    common = {"session_id": uuid.uuid4(), "task_id": uuid.uuid4(), "attempt": 3, "worker": "w"}
    samples = [
        TaskStarted(**common, branch="b", base_commit="c"),  # type: ignore[arg-type]
        TaskFailed(**common, reason="exit_code", exit_code=2),  # type: ignore[arg-type]
        WorkerOnline(worker="w", agent="shell", host="h", pid=1, concurrency=2),
    ]
    for message in samples:
        decoded = decode(encode(message)).message
        assert type(decoded) is type(message)
        assert decoded == message
    assert {
        "task.run",
        "task.started",
        "task.succeeded",
        "task.failed",
        "task.cancelled",
        "task.heartbeat",
        "task.progress",
        "worker.online",
    } <= set(MESSAGE_TYPES)


def test_unknown_payload_fields_are_kept_for_newer_senders() -> None:
    fields = encode(task_message())
    body = json.loads(fields[ENVELOPE_FIELD])
    body["payload"]["added_later"] = 5
    decoded = decode({ENVELOPE_FIELD: json.dumps(body).encode()}).message
    assert getattr(decoded, "added_later", None) == 5


def _with(body_change: dict[str, object]) -> dict[bytes, bytes]:
    body = json.loads(encode(task_message())[ENVELOPE_FIELD])
    body.update(body_change)
    return {ENVELOPE_FIELD.encode(): json.dumps(body).encode()}


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({}, "no 'env' field"),
        ({b"env": b"\xff\xfe not utf-8"}, "not JSON"),
        ({b"env": b"{truncated"}, "not JSON"),
        ({b"env": b"[1, 2]"}, "not a JSON object"),
        (_with({"v": 2}), "unsupported envelope version 2"),
        (_with({"type": "task.exploded"}), "unknown message type"),
        (_with({"id": ""}), "envelope id"),
        (_with({"payload": "x"}), "payload is not an object"),
        (_with({"payload": {"task_id": "not-a-uuid"}}), "invalid task.run payload"),
        (_with({"ts": None}), "ts missing"),
    ],
)
def test_bad_entries_raise_decode_error_with_a_reason(
    fields: dict[bytes, bytes], reason: str
) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode(fields)


@given(st.dictionaries(st.binary(max_size=8), st.binary(max_size=64), max_size=3))
def test_arbitrary_entries_never_raise_anything_but_decode_error(
    fields: dict[bytes, bytes],
) -> None:
    try:
        envelope = decode(fields)
    except DecodeError as exc:
        assert str(exc)
    else:
        assert envelope.type in MESSAGE_TYPES


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
        ),
        max_leaves=10,
    )
)
def test_arbitrary_json_never_raises_anything_but_decode_error(value: object) -> None:
    try:
        envelope = decode({b"env": json.dumps(value).encode()})
    except DecodeError as exc:
        assert str(exc)
    else:
        assert envelope.type in MESSAGE_TYPES


async def test_ensure_group_is_idempotent(redis: Redis, keys: Keys) -> None:
    await ensure_group(redis, keys.events, "orchestrator")
    await ensure_group(redis, keys.events, "orchestrator")
    groups = await redis.xinfo_groups(keys.events)
    assert [g["name"] for g in groups] == [b"orchestrator"]


async def test_dead_letter_keeps_the_raw_entry_and_the_reason(redis: Redis, keys: Keys) -> None:
    await dead_letter(
        redis,
        keys,
        stream=keys.events,
        entry_id=b"1-0",
        fields={b"env": b"\xffgarbage"},
        reason="undecodable: x",
        group="g",
    )
    [(_, entry)] = await redis.xrange(keys.dead)
    assert entry[b"raw"] == b"\xffgarbage"
    assert entry[b"reason"] == b"undecodable: x"
    assert entry[b"stream"] == keys.events.encode()
    assert entry[b"entry_id"] == b"1-0"


def test_absurdly_nested_or_oversized_envelopes_are_decode_errors() -> None:
    with pytest.raises(DecodeError, match="not JSON"):
        decode({b"env": b"[" * 200_000 + b"]" * 200_000})
    with pytest.raises(DecodeError, match="exceeds"):
        decode({b"env": b" " * (9 * 1024 * 1024)})
