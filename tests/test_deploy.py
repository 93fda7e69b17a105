"""Deployment files stay valid: the Compose file against the Compose specification, and the
services it names match the commands Swarm has."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


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
