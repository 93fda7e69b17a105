"""`swarm inventory`: `--local` scans in process (no server) and prints the table or JSON; by
default the server scans and stores (`POST /v1/inventory`), and without `--roots` the
command shows what was stored; refusals are one line with the server's code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from swarm_cli import inventory
from swarm_cli.client import CliError
from swarm_cli.main import app
from tests.conftest import init_repo
from tests.e2e.stack import Stack
from tests.e2e.test_cli import ok, swarm


def make_tree(folder: Path) -> Path:
    init_repo(folder / "api", {"main.py": "print(1)\n", "lib.py": "\n", "pyproject.toml": ""})
    init_repo(folder / "web", {"app.ts": "1\n", "package.json": "{}", ".gitignore": "dist/\n"})
    (folder / "web" / "dist").mkdir()
    (folder / "web" / "dist" / "bundle.js").write_text("x\n")
    (folder / "web" / "notes.txt").write_text("n\n")
    return folder


def test_a_local_scan_prints_the_table_and_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = make_tree(tmp_path / "src")
    monkeypatch.setattr(inventory, "console", Console(width=250))  # a path per line
    runner = CliRunner()
    shown = runner.invoke(app, ["inventory", "--roots", str(tree), "--max-depth", "1", "--local"])
    assert shown.exit_code == 0, shown.output
    rows = {line.split("│")[1].strip(): line for line in shown.stdout.splitlines() if "│" in line}
    assert set(rows) == {str(tree / "api"), str(tree / "web")}
    assert "Python 100%" in rows[str(tree / "api")] and "pyproject" in rows[str(tree / "api")]
    # web: app.ts, package.json, .gitignore, notes.txt; not dist/ (.gitignore)
    cells = [c.strip() for c in rows[str(tree / "web")].split("│")]
    assert cells[2:7] == ["TypeScript 100%", "npm", "4", "12 B", "1"]

    as_json = runner.invoke(app, ["inventory", "--roots", str(tree), "--local", "--json"])
    assert as_json.exit_code == 0, as_json.output
    body = json.loads(as_json.stdout)
    assert body["roots"] == [str(tree.resolve())]
    assert [p["name"] for p in body["projects"]] == ["api", "web"]
    api = body["projects"][0]
    assert (api["files"], api["commits_30d"], api["kind"]) == (3, 1, "git")

    missing = runner.invoke(app, ["inventory", "--roots", str(tmp_path / "nope"), "--local"])
    assert isinstance(missing.exception, CliError)  # `swarm` prints it: one line, exit 1
    assert missing.exception.code == "root_not_found"


def test_the_server_scans_stores_and_shows(stack: Stack, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src")  # the stack's repository root is tmp_path
    stack.start_orchestrator()

    table = ok(
        swarm("inventory", "--roots", "src", "--max-depth", "1", url=stack.api_url, cwd=tmp_path)
    )
    assert str(tree / "api") in table and "TypeScript 100%" in table

    scanned = json.loads(ok(swarm("inventory", "--roots", str(tree), "--json", url=stack.api_url)))
    assert [p["name"] for p in scanned["projects"]] == ["api", "web"]
    assert scanned["projects"][1]["files"] == 4

    stored = json.loads(ok(swarm("inventory", "--json", url=stack.api_url)))
    assert sorted(p["path"] for p in stored) == [str(tree / "api"), str(tree / "web")]
    assert str(tree / "web") in ok(swarm("inventory", url=stack.api_url))

    refused = swarm("inventory", "--roots", "/usr", url=stack.api_url)
    assert refused.returncode == 1
    assert "[repo_not_allowed, HTTP 403]" in refused.stderr
