"""The images' entry commands, run as plain processes on this machine the way their
containers run them: the command and health check of each Dockerfile, with the image's
environment and the compose service's, against the test PostgreSQL and the compose file's
own Redis (Valkey under the same ACL). The packages the images uninstall are hidden, so a
command that still needed one would fail here as in the image.

The orchestrator migrates a fresh database, comes up healthy (`/readyz`) and stops within
its stop grace period; a shell adapter comes up under the adapter Redis user, is healthy and
drains on SIGTERM; the noop adapter, under the same user, completes a noop task (its
reports on `swarm:events`, its entry acknowledged); the adapter health check fails with a
wrong Redis password, an unreachable Redis, a missing CLI or a missing key."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from redis import Redis as SyncRedis

from swarm_adapter.runners import AGENT_CLIS, cli_runner_class
from swarm_cli.local.embedded import free_port
from swarm_common.messages import TaskMessage
from swarm_common.specs import NOOP_AGENT
from swarm_common.streams import ADAPTERS_GROUP, Keys, decode, encode
from tests.agents.clis import CLIS
from tests.deploy import compose
from tests.deploy.dockerfiles import ADAPTER, ORCHESTRATOR, exec_form, host_env, stages
from tests.deploy.redis_server import ComposeRedis, running
from tests.servers import Servers, create_database, database_name, drop_database, run_sync
from tests.servers import with_database as on_database
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

TOKEN = "a-long-random-bootstrap-token-0123456789"


@pytest.fixture
def compose_redis(tmp_path: Path) -> Iterator[ComposeRedis]:
    with running(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def hidden_packages(tmp_path: Path) -> Path:
    """A folder that, first on PYTHONPATH, hides what the images' build uninstalls."""
    build = next(s for s in stages(ORCHESTRATOR) if s.name == "build")
    script = " ".join(build.last("RUN").value)
    removed = re.search(r"uninstall -y ([\w\- ]+)", script)
    assert removed is not None
    folder = tmp_path / "hidden"
    folder.mkdir()
    for package in removed[1].split():
        module = package.replace("-", "_")
        assert importlib.util.find_spec(module) is not None, f"{module} is installed here"
        (folder / f"{module}.py").write_text(f"raise ImportError('{package} is not in the image')")
    return folder


def grace_s(service: str) -> float:
    """A compose service's `stop_grace_period` in seconds."""
    value = str(compose.load()["services"][service]["stop_grace_period"])
    return float(value.removesuffix("s"))


def _run(
    argv: list[str], env: dict[str, str], timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(proc: subprocess.Popen[bytes], grace: float) -> int | None:
    """SIGTERM, as `docker stop` sends; the exit code within `grace`, else None (killed)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return None


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username}:{password}@{parts.hostname}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


# --- the orchestrator image -----------------------------------------------------------------


@pytest.fixture
def empty_database(servers: Servers) -> Iterator[str]:
    name = database_name("image")
    run_sync(lambda: create_database(servers.pg_admin_url, name))
    yield on_database(servers.pg_admin_url, name)
    run_sync(lambda: drop_database(servers.pg_admin_url, name))


def orchestrator_env(service: str, overrides: dict[str, str], hidden: Path) -> dict[str, str]:
    """The orchestrator image's environment, then the compose service's, then what points
    them at this machine's servers (each a variable the compose service sets too)."""
    image = stages(ORCHESTRATOR)[-1].env()
    env = {
        **image,
        **compose.environment(compose.load()["services"][service], {"SWARM_API_TOKEN": TOKEN}),
    }
    assert {"SWARM_DATABASE_URL", "SWARM_REDIS_URL"} <= set(env)
    return host_env(env, PYTHONPATH=str(hidden), **overrides)


def test_orchestrator_image_migrates_comes_up_healthy_and_stops(
    empty_database: str,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
    hidden_packages: Path,
) -> None:
    port = free_port()
    local = {
        "SWARM_DATABASE_URL": empty_database,
        "SWARM_REDIS_URL": redis_url,
        "SWARM_REDIS_PREFIX": redis_prefix,
        "SWARM_WORKSPACE": str(tmp_path / "workspace"),
        "SWARM_LOCAL_REPO_ROOTS": str(tmp_path),
        "SWARM_HOST": "127.0.0.1",
        "SWARM_PORT": str(port),
    }
    migrate = compose.swarm_command(compose.load()["services"]["migrate"])
    assert migrate is not None
    done = _run(migrate, orchestrator_env("migrate", local, hidden_packages))
    assert done.returncode == 0, done.stdout + done.stderr

    final = stages(ORCHESTRATOR)[-1]
    env = orchestrator_env("orchestrator", local, hidden_packages)
    health = exec_form(final.last("HEALTHCHECK"))
    assert _run(health, env, timeout_s=30).returncode != 0, "healthy before it started"
    log = tmp_path / "orchestrator.log"
    proc = _start(exec_form(final.last("CMD")), env, log)
    try:

        def healthy() -> bool:
            assert proc.poll() is None, log.read_text()
            return _run(health, env, timeout_s=30).returncode == 0

        eventually(healthy, timeout_s=60, interval_s=0.3, message=lambda: log.read_text())
    finally:
        code = _stop(proc, grace_s("orchestrator"))
    # uvicorn ends by the signal it got, once shut down: what `docker stop` expects.
    assert code in (0, -signal.SIGTERM), log.read_text()
    assert "orchestrator stopped" in log.read_text()


# --- the adapter image ----------------------------------------------------------------------


def adapter_env(
    kind: str,
    redis: ComposeRedis,
    workspace: Path,
    hidden: Path,
    keys: dict[str, str] | None = None,
) -> dict[str, str]:
    """The adapter image's environment for `kind`, then its compose service's (its Redis URL
    on the local server, with the compose file's user and password)."""
    image = stages(ADAPTER)[-1].env({"AGENT": kind})
    service = compose.adapters(compose.load())[kind]
    env = {**image, **compose.environment(service, keys)}
    env["SWARM_REDIS_URL"] = compose.localised(env["SWARM_REDIS_URL"], redis.port)
    workspace.mkdir(exist_ok=True)
    return host_env(env, PYTHONPATH=str(hidden), SWARM_WORKSPACE=str(workspace))


def test_shell_adapter_image_comes_up_healthy_and_drains(
    compose_redis: ComposeRedis, tmp_path: Path, hidden_packages: Path
) -> None:
    final = stages(ADAPTER)[-1]
    env = adapter_env("shell", compose_redis, tmp_path / "workspace", hidden_packages)
    health = exec_form(final.last("HEALTHCHECK"))
    log = tmp_path / "adapter.log"
    proc = _start(exec_form(final.last("CMD")), env, log)
    try:
        with SyncRedis.from_url(compose_redis.orchestrator_url) as redis:

            def announced() -> list[bytes]:
                assert proc.poll() is None, log.read_text()
                return list(redis.scan_iter(match="swarm:worker:shell-*"))

            eventually(announced, timeout_s=30, message=lambda: log.read_text())
        checked = _run(health, env)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert checked.stdout.startswith("healthy:")
    finally:
        code = _stop(proc, grace_s("adapter-shell"))
    assert code == 0, log.read_text()


def test_noop_adapter_image_completes_a_noop_task_under_the_adapter_user(
    compose_redis: ComposeRedis, tmp_path: Path, hidden_packages: Path
) -> None:
    """The compose service `adapter-noop` as its container runs it (the image's command and
    environment for AGENT=noop, the service's own: no key, no shell), logged in as the
    compose file's `adapter` Redis user: healthy, it reports a noop task succeeded (its
    start in that report) and acknowledges its entry, then drains on SIGTERM."""
    final = stages(ADAPTER)[-1]
    env = adapter_env(NOOP_AGENT, compose_redis, tmp_path / "workspace", hidden_packages)
    assert "SWARM_ALLOW_SHELL_AGENT" not in env
    keys = Keys()
    stream = keys.tasks(NOOP_AGENT)
    session = uuid.uuid4()
    task = TaskMessage(
        session_id=session,
        task_id=uuid.uuid4(),
        task_key="join",
        attempt=1,
        agent=NOOP_AGENT,
        title="join",
        prompt="",
        repo=f"repos/{session}.git",
        base_commit="0" * 40,
        branch=f"swarm/{session}/task/join",
        timeout_s=30,
    )
    log = tmp_path / "adapter.log"
    proc = _start(exec_form(final.last("CMD")), env, log)
    try:
        with SyncRedis.from_url(compose_redis.orchestrator_url) as redis:

            def announced() -> list[bytes]:
                assert proc.poll() is None, log.read_text()
                return list(redis.scan_iter(match=f"swarm:worker:{NOOP_AGENT}-*"))

            eventually(announced, timeout_s=30, message=lambda: log.read_text())
            redis.xadd(stream, encode(task))

            def reported() -> list[str]:
                assert proc.poll() is None, log.read_text()
                entries = redis.xrange(keys.events)
                found = [decode(fields).message for _, fields in entries]
                types = [m.TYPE for m in found if getattr(m, "task_id", None) == task.task_id]
                return types if "task.succeeded" in types else []

            types = eventually(reported, timeout_s=30, message=lambda: log.read_text())
            assert types == ["task.succeeded"]  # its start inside (`Began`)
            assert redis.xpending(stream, ADAPTERS_GROUP)["pending"] == 0
        checked = _run(exec_form(final.last("HEALTHCHECK")), env)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    finally:
        code = _stop(proc, grace_s("adapter-noop"))
    assert code == 0, log.read_text()
    assert not list((tmp_path / "workspace").iterdir()), "a noop adapter writes nothing there"


def test_adapter_health_check_fails_on_a_wrong_password_or_no_redis(
    compose_redis: ComposeRedis, tmp_path: Path, hidden_packages: Path
) -> None:
    final = stages(ADAPTER)[-1]
    health = exec_form(final.last("HEALTHCHECK"))
    env = adapter_env("shell", compose_redis, tmp_path / "workspace", hidden_packages)
    assert _run(health, env).returncode == 0
    wrong = {**env, "SWARM_REDIS_URL": _with_password(env["SWARM_REDIS_URL"], "not-it")}
    refused = _run(health, wrong)
    assert refused.returncode == 1
    assert "AuthenticationError" in refused.stderr and "not-it" not in refused.stderr
    url = env["SWARM_REDIS_URL"].replace(f":{compose_redis.port}/", f":{free_port()}/")
    gone = {**env, "SWARM_REDIS_URL": url}
    unreachable = _run(health, gone)
    assert unreachable.returncode == 1
    assert "does not answer" in unreachable.stderr


def test_agent_adapter_health_check_needs_its_cli_and_its_key(
    compose_redis: ComposeRedis, tmp_path: Path, hidden_packages: Path
) -> None:
    """With a `claude` on PATH that answers `--version` and its key set, healthy; without
    the CLI or without the key, unhealthy, and the adapter itself refuses to start (2)."""
    final = stages(ADAPTER)[-1]
    health = exec_form(final.last("HEALTHCHECK"))
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "claude").write_text('#!/bin/sh\necho "2.1.197 (Claude Code)"\n')
    (stub / "claude").chmod(0o755)
    workspace = tmp_path / "workspace"
    keys = {"ANTHROPIC_API_KEY": "sk-ant-test-key"}
    env = adapter_env("claude", compose_redis, workspace, hidden_packages, keys)
    with_cli = {**env, "PATH": f"{stub}:{env['PATH']}"}
    checked = _run(health, with_cli)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    no_cli = _run(health, env)
    assert no_cli.returncode == 1
    assert "the `claude` CLI is not installed" in no_cli.stderr
    no_key = adapter_env("claude", compose_redis, workspace, hidden_packages)
    keyless = _run(health, {**no_key, "PATH": with_cli["PATH"]})
    assert keyless.returncode == 1
    assert "ANTHROPIC_API_KEY is not set" in keyless.stderr
    refused = _run(exec_form(final.last("CMD")), env)
    assert refused.returncode == 2, refused.stdout + refused.stderr


# --- the agent CLIs as the adapter image installs them --------------------------------------


@pytest.mark.agents
@pytest.mark.parametrize("kind", AGENT_CLIS)
def test_adapter_image_installs_a_cli_that_runs_and_passes_its_health_check(
    kind: str, compose_redis: ComposeRedis, tmp_path: Path, hidden_packages: Path
) -> None:
    """The adapter image's install step, run here with the image's `/opt/agent` in a temporary
    folder: the pinned CLI from npm, which answers `--version` with nothing but that folder
    on PATH (its own Node.js, when it runs on Node); then the image's health check, with the
    folder on PATH where the image has it, is healthy."""
    agent = next(s for s in stages(ADAPTER) if s.name == "agent")
    prefix = tmp_path / "agent"
    script = agent.last("RUN").value[0].replace("/opt/agent", str(prefix))
    build_args = {**agent.args(), "AGENT": kind}
    try:
        installed = _run(["sh", "-c", script], {**os.environ, **build_args}, timeout_s=600)
        assert installed.returncode == 0, installed.stdout + installed.stderr
        alone = {"PATH": str(prefix / "bin"), "HOME": str(tmp_path)}
        version = _run([str(prefix / "bin" / kind), "--version"], alone)
        assert version.returncode == 0, version.stdout + version.stderr
        assert CLIS[kind].version in version.stdout

        final = stages(ADAPTER)[-1]
        key = {cli_runner_class(kind).key_env: "sk-test-key"}
        env = adapter_env(kind, compose_redis, tmp_path / "workspace", hidden_packages, key)
        env["PATH"] = env["PATH"].replace("/opt/agent/bin", str(prefix / "bin"))
        checked = _run(exec_form(final.last("HEALTHCHECK")), env)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    finally:
        shutil.rmtree(prefix, ignore_errors=True)  # hundreds of MB per CLI
