"""docker-compose.yml stays true to the code, with no Docker engine: it follows the Compose
specification; every `swarm` command it runs exists with the options it gives; every
variable it sets is a setting of the process that reads it, with a value that validates;
adapters scale without a clash, kinds without a key are not started, keys reach only their
own kind; `.env.example` documents exactly what the file reads; and its Redis gives each
service the user `swarm_common.acl` describes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from redis import Redis as SyncRedis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, NoPermissionError
from redis.retry import Retry

from swarm_adapter.runners import AGENT_CLIS, cli_runner_class
from swarm_adapter.settings import AdapterSettings
from swarm_common import acl
from swarm_common.specs import ADAPTER_KINDS, NOOP_AGENT
from swarm_orchestrator.settings import OrchestratorSettings
from tests.deploy import compose
from tests.deploy.cli import Refused, command_name, parse
from tests.deploy.redis_server import ComposeRedis, running

TOKEN = "a-long-random-bootstrap-token-0123456789"
ENV = {"SWARM_API_TOKEN": TOKEN}
"""The least a `.env` must say: every other variable has a default."""

COMPOSE_LEVEL = {
    "COMPOSE_PROFILES": "which agent kinds' adapters run (read by Compose itself)",
    "SWARM_DB_PASSWORD": "the PostgreSQL user's password, in SWARM_DATABASE_URL",
    "SWARM_REDIS_ORCHESTRATOR_PASSWORD": "the orchestrator's Redis password (`swarm redis-acl`)",
    "SWARM_REDIS_ADAPTER_PASSWORD": "the adapters' Redis password (`swarm redis-acl`)",
    "REPOS_DIR": "the folder of local repositories mounted at /src",
}
"""Variables of `.env` that Compose reads to write the file, not settings of a process."""


@pytest.fixture
def compose_redis(tmp_path: Path) -> Iterator[ComposeRedis]:
    with running(tmp_path) as server:
        yield server


def test_compose_file_follows_the_compose_spec() -> None:
    tool = Path(sys.executable).parent / "check-jsonschema"
    found = str(tool) if tool.exists() else shutil.which("check-jsonschema")
    assert found, "check-jsonschema is part of the dev extra"
    result = subprocess.run(
        [found, "--builtin-schema", "vendor.compose-spec", str(compose.COMPOSE_FILE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_swarm_command_parses_with_the_cli() -> None:
    """Each `command:` and health check that runs `swarm` names a real sub-command with
    options it has; the migration job, the server and an adapter per kind (noop included)
    are there."""
    services = compose.load()["services"]
    ran = {}
    for name, service in services.items():
        for key in ("command", "entrypoint"):
            argv = service.get(key)
            if isinstance(argv, list) and argv and argv[0] == "swarm":
                ran[name] = command_name(argv)
        test = (service.get("healthcheck") or {}).get("test")
        if isinstance(test, list) and test[:2] == ["CMD", "swarm"]:
            parse(test[1:])
    assert ran["migrate"] == "migrate"
    assert ran["orchestrator"] == "server"
    adapters = {name for name, command in ran.items() if command == "adapter"}
    assert {f"adapter-{kind}" for kind in ADAPTER_KINDS} <= adapters


def test_a_wrong_command_or_option_is_caught() -> None:
    """The parse is strict: what the CLI would refuse fails here too."""
    for argv in (
        ["swarm", "adaptr"],
        ["swarm", "adapter", "--agnet", "claude"],
        ["swarm", "adapter", "--concurrency", "0"],
        ["swarm", "server", "--port", "http"],
    ):
        with pytest.raises(Refused):
            parse(argv)


def test_every_variable_set_is_a_setting_of_its_process() -> None:
    """A `SWARM_*` variable of a Swarm service is a field of the settings its command reads;
    any other variable is an agent's key or base URL, given to that kind's adapter only."""
    for name, service in compose.swarm_services(compose.load()).items():
        settings = compose.SETTINGS_OF[command_name(compose.swarm_command(service) or [])]
        fields = {f"SWARM_{field.upper()}" for field in settings.model_fields}
        env = compose.environment(service, ENV)
        assert not {v for v in env if v.startswith("SWARM_")} - fields, name
        vendor = {v for v in env if not v.startswith("SWARM_")}
        kind = env.get("SWARM_AGENT")
        if kind in AGENT_CLIS:
            runner = cli_runner_class(kind)
            assert vendor == {runner.key_env, runner.base_url_env}, name
        else:
            assert not vendor, f"{name} gets {vendor}"


def test_the_values_validate_as_each_process_reads_them(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, service in compose.swarm_services(compose.load()).items():
        argv = compose.swarm_command(service) or []
        for variable, value in compose.environment(service, ENV).items():
            monkeypatch.setenv(variable, value)
        settings = compose.SETTINGS_OF[command_name(argv)]()
        for variable in compose.environment(service, ENV):
            monkeypatch.delenv(variable)
        if isinstance(settings, AdapterSettings):
            assert settings.database_url is None
            assert urlsplit(settings.require_redis_url()).username == acl.ADAPTER, name
            assert settings.allow_shell_agent is (settings.agent == "shell"), name
            if settings.agent == NOOP_AGENT:  # it runs nothing: no command, no shell
                assert not settings.runs_commands, name
        else:
            assert isinstance(settings, OrchestratorSettings)
            assert urlsplit(settings.require_redis_url()).username == acl.ORCHESTRATOR, name
            assert settings.require_database_url().startswith("postgresql+asyncpg://swarm:")
        assert str(settings.workspace) == "/workspace"


def test_adapters_scale_without_a_clash(monkeypatch: pytest.MonkeyPatch) -> None:
    """No fixed container name, host name, port or worker name: `--scale adapter-claude=8`
    makes eight containers, each its own consumer (named after its container's host name)."""
    kinds = compose.adapters(compose.load())
    assert set(kinds) == set(ADAPTER_KINDS)
    for kind, service in kinds.items():
        assert not {"container_name", "hostname", "ports", "scale"} & set(service), kind
        assert "SWARM_WORKER_NAME" not in service["environment"], kind
        assert service["restart"] == "unless-stopped"
        assert "workspace:/workspace" in service["volumes"]
        assert service["build"]["args"]["AGENT"] == kind
        assert service["image"] == f"swarm-adapter-{kind}"
    names = set()
    for container_id in ("3f2a9c1d7e4b", "8c1e0b6a2d9f"):
        monkeypatch.setattr(socket, "gethostname", lambda c=container_id: c)
        names.add(AdapterSettings(agent="claude").worker_name)  # the same pid in each
    assert len(names) == 2


SANDBOX_SECURITY_OPT = {
    "no-new-privileges:true",
    "seccomp=unconfined",
    "apparmor=unconfined",
    "systempaths=unconfined",
}
"""What bubblewrap needs from Docker (deploy/README.md, "Agent sandbox"): user namespaces,
mounts and pivot_root (seccomp), mounts inside them (AppArmor) and a /proc of its own (no
masked /proc paths); no-new-privileges stays."""


def test_adapters_that_run_agents_may_make_the_sandbox_and_noop_keeps_dockers_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The adapters that run agents or commands get what bwrap needs and nothing more: no
    capability, no privileged mode, no-new-privileges kept; SWARM_SANDBOX is `auto` unless
    `.env` says otherwise, and the adapter reads it. The noop adapter runs nothing: Docker's
    defaults and no SWARM_SANDBOX."""
    kinds = compose.adapters(compose.load())
    for kind, service in kinds.items():
        assert service["cap_drop"] == ["ALL"], kind
        assert not {"privileged", "cap_add", "userns_mode"} & set(service), kind
        env = compose.environment(service, ENV)
        if kind == NOOP_AGENT:
            assert service["security_opt"] == ["no-new-privileges:true"]
            assert "SWARM_SANDBOX" not in env
            continue
        assert set(service["security_opt"]) == SANDBOX_SECURITY_OPT, kind
        assert env["SWARM_SANDBOX"] == "auto", kind
        for value in ("auto", "required", "off"):
            env = compose.environment(service, {**ENV, "SWARM_SANDBOX": value})
            monkeypatch.setenv("SWARM_SANDBOX", env["SWARM_SANDBOX"])
            assert AdapterSettings(agent=kind).sandbox == value, kind
    assert set(kinds) - {NOOP_AGENT} == set(ADAPTER_KINDS) - {NOOP_AGENT}


def test_kinds_without_a_key_are_not_started() -> None:
    """An agent CLI's adapters belong to the profile of their kind (COMPOSE_PROFILES in
    `.env` names the kinds with a key), so `docker compose up` starts none of a kind without
    one; the shell and noop adapters need no key and always run (a graph's noop nodes never
    wait for an adapter)."""
    kinds = compose.adapters(compose.load())
    for kind in set(ADAPTER_KINDS) - set(AGENT_CLIS):
        assert "profiles" not in kinds[kind], kind
    for kind in AGENT_CLIS:
        assert kinds[kind]["profiles"] == [kind]
    assert "COMPOSE_PROFILES" in compose.env_example()


def test_secrets_reach_only_who_needs_them() -> None:
    loaded = compose.load()
    services = loaded["services"]
    for kind, service in compose.adapters(loaded).items():
        env = service["environment"]
        assert not {"SWARM_DATABASE_URL", "SWARM_API_TOKEN"} & set(env), kind
    for name in ("migrate", "orchestrator"):
        assert not {v for v in services[name]["environment"] if "API_KEY" in v}, name
    assert "env_file" not in str(loaded), "env_file would give a service every key of .env"
    # The project folder holds .env: it is never mounted into a container.
    for service in services.values():
        for volume in service.get("volumes", []):
            assert not compose.interpolate(volume).startswith(("./:", ".:")), volume


def test_env_example_documents_exactly_what_compose_reads() -> None:
    """Every variable the file interpolates is in `.env.example` and the reverse; each is a
    setting (passed through) or one of the Compose-level ones; and with `.env.example` as it
    is, only the bootstrap token is missing."""
    example = compose.env_example()
    text = compose.COMPOSE_FILE.read_text()
    used = compose.variables(text)
    assert used - set(example) == set()
    assert set(example) - used - {"COMPOSE_PROFILES"} == set()
    settings_fields = {
        f"SWARM_{field.upper()}"
        for cls in (OrchestratorSettings, AdapterSettings)
        for field in cls.model_fields
    }
    keys = {
        getattr(cli_runner_class(kind), attribute)
        for kind in AGENT_CLIS
        for attribute in ("key_env", "base_url_env")
    }
    assert set(example) - settings_fields - keys - set(COMPOSE_LEVEL) == set()
    with pytest.raises(compose.MissingVariable, match="SWARM_API_TOKEN"):
        compose.interpolate(text, example)
    compose.interpolate(text, {**example, **ENV})


def test_servers_have_health_checks_volumes_and_restart_policies() -> None:
    services = compose.load()["services"]
    for name, path in (("postgres", "/var/lib/postgresql/data"), ("redis", "/data")):
        service = services[name]
        assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
        assert any(v.endswith(f":{path}") for v in service["volumes"]), name
        assert service["restart"] == "unless-stopped"
    assert services["migrate"]["restart"] == "no"
    orchestrator = services["orchestrator"]
    assert orchestrator["restart"] == "unless-stopped"
    assert orchestrator["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "workspace:/workspace" in orchestrator["volumes"]


# --- Redis users -----------------------------------------------------------------------------


def test_compose_services_use_their_own_redis_user() -> None:
    loaded = compose.load()
    services = loaded["services"]
    shared = loaded["x-swarm-env"]["SWARM_REDIS_URL"]
    assert urlsplit(compose.interpolate(shared)).username == acl.ORCHESTRATOR
    for name in ("migrate", "orchestrator"):
        assert services[name]["environment"]["SWARM_REDIS_URL"] == shared
    for kind, service in compose.adapters(loaded).items():
        url = compose.interpolate(service["environment"]["SWARM_REDIS_URL"])
        assert urlsplit(url).username == acl.ADAPTER, kind
    assert "redis://:" not in compose.COMPOSE_FILE.read_text()  # no default user


def test_compose_redis_has_the_users_of_swarm_redis_acl(compose_redis: ComposeRedis) -> None:
    """The Redis service's own command, run with Valkey in place of redis-server: it loads
    exactly the users `swarm_common.acl` renders, the default user is off, each service's
    URL logs in with its default password, and the health check passes."""
    env = compose_redis.env
    hashes = {
        acl.ORCHESTRATOR: acl.password_hash(env["REDIS_ORCHESTRATOR_PASSWORD"]),
        acl.ADAPTER: acl.password_hash(env["REDIS_ADAPTER_PASSWORD"]),
    }
    assert compose_redis.acl_file.read_text().splitlines() == acl.acl_lines("swarm", hashes)
    with SyncRedis.from_url(compose_redis.orchestrator_url) as orchestrator:
        assert orchestrator.set("swarm:control", "{}")
    with SyncRedis.from_url(compose_redis.adapter_url) as adapter:
        assert adapter.get("swarm:control") == b"{}"
        with pytest.raises(NoPermissionError):
            adapter.set("swarm:control", "{}")
    with (
        SyncRedis(port=compose_redis.port, retry=Retry(NoBackoff(), 0)) as anonymous,
        pytest.raises(AuthenticationError),
    ):
        anonymous.ping()
    health = subprocess.run(
        ["sh", "-c", compose_redis.health_check()],
        env={"PATH": os.environ["PATH"], **env},
        timeout=30,
        check=False,
    )
    assert health.returncode == 0
