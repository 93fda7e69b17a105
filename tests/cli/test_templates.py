"""`swarm submit --template`: `--dry-run` prints the graph a topology expands into, as a
graph file `swarm submit` reads back; against a server the session stores that graph; bad
workers are one line; `swarm comment` sends a task back."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from swarm_cli.main import app
from tests.conftest import init_repo
from tests.e2e.stack import Stack
from tests.e2e.test_cli import ok, swarm

FAN_OUT = [
    "submit",
    "--template",
    "fan-out",
    "--goal",
    "A greeting service",
    "--worker",
    "backend@codex:Write the API.",
    "--worker",
    "frontend:Write the page.",
]


def test_a_dry_run_prints_the_graph_file_the_template_expands_into(tmp_path: Path) -> None:
    runner = CliRunner()
    printed = runner.invoke(app, [*FAN_OUT, "--repo", str(tmp_path), "--dry-run"])
    assert printed.exit_code == 0, printed.output
    graph = yaml.safe_load(printed.stdout)
    assert (graph["goal"], graph["repo"]) == ("A greeting service", str(tmp_path))
    assert [t["key"] for t in graph["tasks"]] == [
        "root",
        "worker-1-backend",
        "worker-2-frontend",
        "verify",
        "synthesize",
    ]
    assert graph["tasks"][1]["agent"] == "codex" and graph["tasks"][2]["agent"] == "auto"
    assert graph["tasks"][3]["verify"] is True

    bad = swarm("submit", "--template", "fan-out", "--goal", "g", "--worker", "x", url=None)
    assert bad.returncode == 1 and "WHO[@AGENT]:PROMPT" in bad.stderr
    assert "Traceback" not in bad.stderr
    unknown = swarm("submit", "--template", "star", "--dry-run", url=None)
    assert unknown.returncode == 1 and "no template 'star'" in unknown.stderr
    stray = swarm("submit", "task.yaml", "--worker", "qa:x", url=None)
    assert stray.returncode == 1 and "go with --template" in stray.stderr


def test_a_template_submitted_to_the_server_is_stored_as_its_graph(
    stack: Stack, tmp_path: Path
) -> None:
    repo = init_repo(tmp_path / "project")
    stack.start_orchestrator()
    url = stack.api_url
    sid = ok(swarm(*FAN_OUT, "--repo", str(repo), url=url)).strip()
    with stack.client() as client:
        tasks = client.get(f"/v1/sessions/{sid}/tasks").json()
    assert sorted(t["key"] for t in tasks) == [
        "root",
        "synthesize",
        "verify",
        "worker-1-backend",
        "worker-2-frontend",
    ]
    file = tmp_path / "pipeline.yaml"
    file.write_text(
        ok(
            swarm(
                "submit", "--template", "pipeline", "--phase", "design:echo d > d.txt",
                "--phase", "build@claude:Build it.", "--repo", str(repo), "--dry-run", url=url,
            )
        )
    )  # fmt: skip
    again = ok(swarm("submit", str(file), url=url)).strip()
    with stack.client() as client:
        keys = [t["key"] for t in client.get(f"/v1/sessions/{again}/tasks").json()]
    assert sorted(keys) == ["01-design", "02-build"]
