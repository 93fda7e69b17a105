"""Swarm's Redis users (`swarm_common.acl`) on a Valkey of the test's own (the shared test
Redis gets no ACL users): adapters and the orchestrator do their whole work as their own
users, an adapter is refused what adapters never do, a client that does not log in gets
nothing, and `swarm up` keeps its users across restarts."""

from __future__ import annotations

import asyncio
import contextlib
import stat
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, NoPermissionError

from swarm_adapter.runners.shell import ShellRunner
from swarm_adapter.settings import AdapterSettings
from swarm_adapter.worker import Adapter
from swarm_cli.local.embedded import EmbeddedValkey
from swarm_cli.local.up import start_valkey
from swarm_common import acl, git, leases
from swarm_common.streams import ADAPTERS_GROUP, Keys, decode, encode, ensure_group
from swarm_common.system import SystemMode, SystemState, read_mode
from tests.adapter.helpers import Mirror, message
from tests.conftest import init_repo
from tests.e2e.stack import Stack, stopped_after
from tests.waiting import eventually, wait_until, wait_until_async

Connect = Callable[[str], Redis]
NO_RETRY = Retry(NoBackoff(), 0)
"""A refused login is an answer, not a network hiccup to retry with back-off."""


@dataclass
class Users:
    """The URLs of Swarm's users on one server; `admin` may read the ACL log (None where
    the `default` user is off, as `swarm up` runs it)."""

    orchestrator: str
    adapter: str
    admin: str | None


def _user_url(port: int | None, user: str, password: str) -> str:
    return f"redis://{user}:{password}@127.0.0.1:{port}/0"


@contextlib.contextmanager
def _server_with_users(how: str, root: Path, prefix: str) -> Iterator[Users]:
    """A Valkey with Swarm's users for `prefix`, made either as `swarm up` makes them (ACL
    lines in the configuration, the default user off) or with `ACL SETUSER` on a running
    server whose default user stays, for the test, as an administrator."""
    if how == "config-file":
        server = EmbeddedValkey(root, persistent=False, acl_prefix=prefix)
        server.start()
        found = Users(server.url_for(acl.ORCHESTRATOR), server.url_for(acl.ADAPTER), None)
    else:
        server = EmbeddedValkey(root, persistent=False)
        admin_url = server.start()
        urls = {}
        with SyncRedis.from_url(admin_url) as admin:
            for user in acl.USERS:
                password = uuid.uuid4().hex
                assert admin.execute_command(*acl.setuser_args(user, prefix, password=password))
                urls[user] = _user_url(server.port, user, password)
        found = Users(urls[acl.ORCHESTRATOR], urls[acl.ADAPTER], admin_url)
    try:
        yield found
    finally:
        server.stop()


@pytest.fixture(params=["config-file", "acl-setuser"])
def users(request: pytest.FixtureRequest, tmp_path: Path, redis_prefix: str) -> Iterator[Users]:
    with _server_with_users(request.param, tmp_path / "valkey", redis_prefix) as found:
        yield found


@pytest.fixture
def audited_users(tmp_path: Path, redis_prefix: str) -> Iterator[Users]:
    """Users made with `ACL SETUSER`, on a server whose ACL log the test can read."""
    with _server_with_users("acl-setuser", tmp_path / "valkey", redis_prefix) as found:
        yield found


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """Clients that are closed at the end of the test."""
    clients: list[Redis] = []

    def _connect(url: str) -> Redis:
        client = Redis.from_url(url, decode_responses=False, socket_timeout=30)
        clients.append(client)
        return client

    yield _connect
    for client in clients:
        await client.aclose()


def _denials(users: Users) -> list[Any]:
    """Every entry of the server's ACL log: a command refused, anywhere, for anyone."""
    if users.admin is None:
        return []
    with SyncRedis.from_url(users.admin, decode_responses=True) as admin:
        entries: list[Any] = admin.execute_command("ACL", "LOG")
        return entries


@pytest.fixture
def mirror(workspace: Path, git_repo: Path) -> Mirror:
    session_id = uuid.uuid4()
    path = workspace / "repos" / f"{session_id}.git"
    git.clone_bare(str(git_repo), path)
    return Mirror(session_id=session_id, path=path, base=git.resolve_commit(path, "main"))


async def _events(redis: Redis, keys: Keys) -> list[Any]:
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(keys.events)  # type: ignore[assignment]
    return [decode(fields).message for _, fields in entries]


async def _within(step: Awaitable[Any], timeout_s: float = 30.0) -> Any:
    """A refused event would be retried for ever: fail fast instead."""
    return await asyncio.wait_for(step, timeout=timeout_s)


def test_rules_follow_the_key_layout_of_the_prefix() -> None:
    keys = Keys("deploy-a")
    orchestrator, adapter = acl.orchestrator_rules("deploy-a"), acl.adapter_rules("deploy-a")
    assert f"~{keys.all_match}" in orchestrator and f"&{keys.all_match}" in orchestrator
    assert "-@dangerous" in orchestrator and "-@admin" in orchestrator
    assert f"(%R~{keys.control} %R~deploy-a:cancel:*:* +get +mget)" in adapter
    assert f"(%W~{keys.events} %W~{keys.dead} +xadd)" in adapter
    assert not any(rule.startswith("&") for rule in adapter)  # no pub/sub at all
    assert not any(rule in ("+@all", "~*", "allkeys") for rule in orchestrator + adapter)
    with pytest.raises(ValueError, match="cannot be used in ACL rules"):
        acl.adapter_rules("a)b")
    with pytest.raises(ValueError, match="unknown Swarm Redis user"):
        acl.rules_for("root", "swarm")


def test_acl_lines_hold_only_password_hashes() -> None:
    digest = acl.password_hash("s3cret")
    lines = acl.acl_lines("swarm", {acl.ORCHESTRATOR: digest, acl.ADAPTER: None})
    assert lines[0] == "user default off resetpass resetkeys resetchannels -@all"
    assert lines[1].startswith(f"user orchestrator on #{digest} ")
    assert lines[2].startswith("user adapter on resetkeys ")  # no password: cannot log in
    assert "s3cret" not in "\n".join(lines)
    with pytest.raises(ValueError, match="not a SHA-256"):
        acl.acl_lines("swarm", {acl.ADAPTER: "s3cret"})
    assert "s3cret" not in acl.setuser_args(acl.ADAPTER, "swarm", password="s3cret")


async def test_an_adapter_does_all_its_work_as_the_adapter_user(
    users: Users,
    connect: Connect,
    redis_prefix: str,
    workspace: Path,
    mirror: Mirror,
) -> None:
    """The orchestrator side (as the orchestrator user) publishes task messages the way the
    relay does; the adapter (as the adapter user) claims, runs with heartbeats, reports,
    drops a duplicate, dead-letters a bad message, takes over an abandoned one and obeys a
    cancel request; the orchestrator reads the results and the leases."""
    keys = Keys(redis_prefix)
    orch, redis = connect(users.orchestrator), connect(users.adapter)
    settings = AdapterSettings(
        redis_url=users.adapter,
        redis_prefix=redis_prefix,
        workspace=workspace,
        agent="shell",
        worker_name="shell-acl",
        allow_shell_agent=True,
        heartbeat_interval_s=0.2,
        cancel_poll_interval_s=0.05,
        claim_idle_ms=100,
        kill_grace_s=1.0,
    )
    adapter = Adapter(settings=settings, redis=redis, runner=ShellRunner())
    stream = keys.tasks("shell")
    await ensure_group(orch, stream, ADAPTERS_GROUP)
    await adapter.setup()  # the adapter's own XGROUP CREATE meets BUSYGROUP
    assert await read_mode(redis, keys) == SystemMode.RUNNING

    # One task that runs long enough for heartbeats, sent twice; then a bad message.
    work = message(mirror, "sleep 1 && echo done > out.txt", key="work")
    await orch.xadd(stream, encode(work))  # type: ignore[arg-type]
    await orch.xadd(stream, encode(work))  # type: ignore[arg-type]
    await orch.xadd(stream, {b"env": b"not json"})
    assert await _within(adapter.process_available()) == 3
    assert adapter.counts["duplicate"] == 1 and adapter.counts["dead"] == 1

    # An entry a dead adapter read and never acknowledged is taken over (XAUTOCLAIM).
    abandoned = message(mirror, "true", key="abandoned")
    await orch.xadd(stream, encode(abandoned))  # type: ignore[arg-type]
    await orch.xreadgroup(ADAPTERS_GROUP, "shell-dead", {stream: ">"}, count=1)
    await wait_until_async(adapter.reclaim, timeout_s=10)
    assert adapter.counts["reclaimed"] == 1

    # A cancel request, set by the orchestrator, stops a running attempt.
    # (A mark in its worktree, which the adapter's sandbox, where there is one, shows.)
    stopped = message(mirror, "touch started; sleep 60", key="stopped")
    await orch.xadd(stream, encode(stopped))  # type: ignore[arg-type]
    running = asyncio.create_task(adapter.process_available())
    mark = adapter.worktrees.path(stopped) / "started"
    await wait_until(mark.exists, timeout_s=15)
    await orch.set(keys.cancel(stopped.task_id, 1), "cancelled by test")
    assert await _within(running, 15) == 1

    seen = [(e.TYPE, e.task_id) for e in await _events(orch, keys)]
    for msg, outcome in ((work, "succeeded"), (abandoned, "succeeded"), (stopped, "cancelled")):
        assert ("task.started", msg.task_id) in seen
        assert (f"task.{outcome}", msg.task_id) in seen
    assert ("task.heartbeat", work.task_id) in seen
    assert await orch.xlen(keys.dead) == 1
    assert (await orch.xpending(stream, ADAPTERS_GROUP))["pending"] == 0
    states = await leases.inspect(
        orch, keys, [(work.task_id, 1), (abandoned.task_id, 1), (stopped.task_id, 1)]
    )
    assert [(s.state, s.worker) for s in states] == [(leases.LeaseState.DONE, "shell-acl")] * 3
    assert _denials(users) == []


async def test_the_adapter_user_is_refused_what_adapters_never_do(
    users: Users, connect: Connect, redis_prefix: str
) -> None:
    keys, other = Keys(redis_prefix), Keys(f"other-{uuid.uuid4().hex[:8]}")
    orch, redis = connect(users.orchestrator), connect(users.adapter)
    await orch.set(keys.control, SystemState(SystemMode.DRAINING).to_json())
    await orch.set(keys.cancel("t", 1), "cancelled")
    await orch.xadd(keys.events, {b"env": b"{}"})
    assert await read_mode(redis, keys) == SystemMode.DRAINING  # reading is fine
    assert await redis.get(keys.cancel("t", 1)) == b"cancelled"
    refused: list[tuple[Any, ...]] = [
        ("FLUSHALL",),
        ("FLUSHDB",),
        ("CONFIG", "GET", "*"),
        ("KEYS", "*"),
        ("SCAN", "0"),
        ("ACL", "LIST"),
        ("ACL", "SETUSER", "adapter", "+@all"),
        ("SHUTDOWN", "NOSAVE"),
        # The system mode and cancel requests belong to the orchestrator.
        ("SET", keys.control, SystemState(SystemMode.RUNNING).to_json()),
        ("DEL", keys.control),
        ("SET", keys.cancel("t", 1), "x"),
        ("DEL", keys.cancel("t", 1)),
        ("EVAL", "return redis.call('SET', KEYS[1], 'x')", 1, keys.control),
        # Results are appended, never read or removed; tasks are never forged.
        ("XRANGE", keys.events, "-", "+"),
        ("XTRIM", keys.events, "MAXLEN", 0),
        ("DEL", keys.events),
        ("XADD", keys.tasks("shell"), "*", "env", "{}"),
        ("DEL", keys.tasks("shell")),
        ("SET", keys.epoch, "x"),
        ("PUBLISH", keys.cancel_channel, "x"),
        # Nothing of another prefix, not even one that starts like ours.
        ("GET", other.control),
        ("SET", other.claim("t", 1), "x"),
        ("XADD", other.events, "*", "env", "{}"),
        ("HSET", other.worker("w"), "a", "b"),
        ("SET", f"{redis_prefix}x:claim:t:1", "x"),
    ]
    for command in refused:
        with pytest.raises(NoPermissionError):
            await redis.execute_command(*command)
    assert await read_mode(orch, keys) == SystemMode.DRAINING
    assert await orch.get(keys.cancel("t", 1)) == b"cancelled"
    assert await orch.xlen(keys.events) == 1


async def test_the_orchestrator_user_has_its_prefix_and_no_administration(
    users: Users, connect: Connect, redis_prefix: str
) -> None:
    keys = Keys(redis_prefix)
    orch = connect(users.orchestrator)
    assert await orch.set(keys.epoch, "now")
    assert await orch.publish(keys.cancel_channel, "t:1") == 0
    assert [k async for k in orch.scan_iter(match=keys.all_match)] == [keys.epoch.encode()]
    for command in [
        ("FLUSHALL",),
        ("FLUSHDB",),
        ("CONFIG", "GET", "*"),
        ("CONFIG", "SET", "appendonly", "no"),
        ("KEYS", "*"),
        ("ACL", "LIST"),
        ("SHUTDOWN", "NOSAVE"),
        ("FUNCTION", "FLUSH"),
        ("GET", "other:epoch"),
        ("PUBLISH", "other:cancel", "x"),
    ]:
        with pytest.raises(NoPermissionError):
            await orch.execute_command(*command)
    assert await orch.get(keys.epoch) == b"now"


def test_neither_user_may_administer_the_server(audited_users: Users, redis_prefix: str) -> None:
    """`ACL DRYRUN` for what cannot be tried for real on a live server (DEBUG is also
    switched off by Valkey's own configuration, which would hide the ACL's answer)."""
    assert audited_users.admin is not None
    keys = Keys(redis_prefix)
    with SyncRedis.from_url(audited_users.admin, decode_responses=True) as admin:
        for user in acl.USERS:
            assert admin.execute_command("ACL", "DRYRUN", user, "GET", keys.control) == "OK"
            for command in [
                ("DEBUG", "SLEEP", "0"),
                ("MONITOR",),
                ("MODULE", "LOAD", "/tmp/x.so"),
                ("REPLICAOF", "NO", "ONE"),
                ("SAVE",),
                ("CLIENT", "KILL", "ID", "1"),
                ("CLIENT", "LIST"),
                ("INFO",),
                ("SWAPDB", "0", "1"),
                ("MIGRATE", "h", "1", keys.epoch, "0", "1"),
                ("FUNCTION", "LOAD", "#!lua name=x\nredis.register_function('f', 'return 1')"),
            ]:
                answer = admin.execute_command("ACL", "DRYRUN", user, *command)
                assert answer != "OK" and "no permissions" in answer, (user, command, answer)


async def test_a_client_that_does_not_log_in_gets_nothing(
    tmp_path: Path, redis_prefix: str
) -> None:
    server = EmbeddedValkey(tmp_path / "valkey", persistent=False, acl_prefix=redis_prefix)
    server.start()
    try:
        port = int(server.port or 0)
        anonymous = Redis(host="127.0.0.1", port=port, retry=NO_RETRY)
        try:
            with pytest.raises(AuthenticationError):
                await anonymous.ping()
            with pytest.raises(AuthenticationError):
                await anonymous.get(Keys(redis_prefix).control)
        finally:
            await anonymous.aclose()
        for user, password in [("default", "x"), (acl.ADAPTER, "wrong")]:
            client = Redis(
                host="127.0.0.1", port=port, username=user, password=password, retry=NO_RETRY
            )
            try:
                with pytest.raises(AuthenticationError):
                    await client.ping()
            finally:
                await client.aclose()
        adapter = Redis.from_url(server.url_for(acl.ADAPTER))
        try:
            assert await adapter.ping()
        finally:
            await adapter.aclose()
    finally:
        server.stop()


def test_swarm_up_keeps_its_users_and_their_passwords_across_restarts(
    tmp_path: Path, redis_prefix: str
) -> None:
    root, keys = tmp_path / "data", Keys(redis_prefix)
    first, urls = start_valkey(root, redis_prefix)
    try:
        with SyncRedis.from_url(urls.orchestrator) as orch:
            orch.set(keys.epoch, "kept")
    finally:
        first.stop()
    files = {user: root / f"valkey-{user}.password" for user in acl.USERS}
    written = {user: path.read_text() for user, path in files.items()}
    for path in files.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    second, again = start_valkey(root, redis_prefix)
    try:
        for before, after in (
            (urls.orchestrator, again.orchestrator),
            (urls.adapter, again.adapter),
        ):
            old, new = urlsplit(before), urlsplit(after)
            assert (old.username, old.password) == (new.username, new.password)
        assert {user: path.read_text() for user, path in files.items()} == written
        assert urlsplit(again.adapter).username == acl.ADAPTER
        config = (second.dir / "valkey.conf").read_text()
        for user in acl.USERS:
            password = second.password_of(user)
            assert password not in config and acl.password_hash(password) in config
        with SyncRedis.from_url(again.orchestrator) as orch:
            assert orch.get(keys.epoch) == b"kept"  # the same server data, the same users
        with SyncRedis.from_url(again.adapter) as adapter, pytest.raises(NoPermissionError):
            adapter.set(keys.epoch, "x")
    finally:
        second.stop()


@pytest.mark.e2e
def test_a_session_runs_end_to_end_with_each_process_as_its_own_user(
    audited_users: Users,
    database_url: str,
    redis_prefix: str,
    workspace: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """Real `swarm server` and `swarm adapter` processes: a chain of two tasks, a cancel
    and a drain, with the orchestrator's every loop and the adapter's every loop running."""
    users, keys = audited_users, Keys(redis_prefix)
    repo = init_repo(tmp_path / "project")
    stack = Stack(
        database_url=database_url,
        redis_url=users.orchestrator,
        redis_prefix=redis_prefix,
        workspace=workspace,
        logs=tmp_path / "logs",
    )
    with stopped_after(stack, request), SyncRedis.from_url(users.orchestrator) as orch:
        stack.start_orchestrator()
        stack.start_adapter(
            "shell-acl",
            concurrency=2,
            SWARM_REDIS_URL=users.adapter,
            SWARM_HEARTBEAT_INTERVAL_S="0.3",
            SWARM_CLAIM_IDLE_MS="1000",
            SWARM_WORKER_TTL_S="3",
        )
        tasks = [
            {"key": "one", "prompt": "sleep 1.5 && echo one > one.txt"},
            {"key": "two", "prompt": "echo two > two.txt", "depends_on": ["one"]},
            {"key": "long", "prompt": "sleep 60"},
        ]
        with stack.client() as client:
            created = client.post(
                "/v1/sessions",
                json={"title": "acl", "repo": str(repo), "base_ref": "main", "tasks": tasks},
            )
            assert created.status_code == 201, created.text
            session_id = created.json()["id"]
            ids = {t["key"]: t["id"] for t in client.get(f"/v1/sessions/{session_id}/tasks").json()}

            def status(key: str) -> str:
                return str(client.get(f"/v1/tasks/{ids[key]}").json()["status"])

            eventually(
                lambda: status("long") == "running", timeout_s=60, message="the long task runs"
            )
            assert client.post(f"/v1/tasks/{ids['long']}/cancel").status_code < 300
            long_id = uuid.UUID(ids["long"])
            eventually(
                lambda: (orch.get(keys.claim(long_id, 1)) or b"").startswith(b"done:"),
                timeout_s=60,
                message="the adapter stops the cancelled attempt and reports it",
            )
            eventually(
                lambda: status("two") == "succeeded", timeout_s=60, message="the chain finishes"
            )
            details = {k: client.get(f"/v1/tasks/{ids[k]}").json() for k in ("one", "two")}
            workers = client.get("/v1/workers").json()
            assert client.post("/v1/system/drain").status_code < 300
            eventually(
                lambda: orch.hget(keys.worker("shell-acl"), "mode") == b"draining",
                timeout_s=60,
                message="the adapter reads the drain and says so in its liveness hash",
            )
            assert client.post("/v1/system/resume").status_code < 300

    for key, task in details.items():
        assert task["status"] == "succeeded", (key, task)
        [attempt] = task["attempts"]
        assert attempt["worker"] == "shell-acl" and attempt["commit"]
    one = details["one"]["attempts"][0]
    assert one["heartbeat_at"] is not None
    assert datetime.fromisoformat(one["heartbeat_at"]) > datetime.fromisoformat(one["started_at"])
    assert [(w["name"], w["alive"]) for w in workers] == [("shell-acl", True)]
    cancelled = [e for e in _sync_events(users.orchestrator, keys) if e.TYPE == "task.cancelled"]
    assert [e.task_id for e in cancelled] == [long_id]
    assert _denials(users) == [], "a command was refused (see the ACL log)"
    for name in ("orchestrator", "shell-acl"):
        assert "NOPERM" not in stack.log(name) and "no permissions" not in stack.log(name)


def _sync_events(url: str, keys: Keys) -> list[Any]:
    with SyncRedis.from_url(url) as client:
        entries: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(keys.events)
    return [decode(fields).message for _, fields in entries]
