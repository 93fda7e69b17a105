"""Which package may import which: the command line over the services, the services over the
shared library, never the other way round.

    swarm_cli  →  swarm_orchestrator, swarm_adapter  →  swarm_common

The orchestrator and the adapter never import each other (an adapter is stateless and holds
no database code; the orchestrator does not run agents), and a server never imports its own
client. Lazy imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PACKAGES = {
    "swarm_common": ROOT / "libs/swarm_common/swarm_common",
    "swarm_orchestrator": ROOT / "services/orchestrator/swarm_orchestrator",
    "swarm_adapter": ROOT / "services/adapter/swarm_adapter",
    "swarm_cli": ROOT / "services/cli/swarm_cli",
}

ALLOWED = {
    "swarm_common": {"swarm_common"},
    "swarm_orchestrator": {"swarm_orchestrator", "swarm_common"},
    "swarm_adapter": {"swarm_adapter", "swarm_common"},
    "swarm_cli": {"swarm_cli", "swarm_orchestrator", "swarm_adapter", "swarm_common"},
}


def imported_packages(source: str) -> set[tuple[int, str]]:
    """(line, top-level package) of every Swarm package a module imports, anywhere in it."""
    found: set[tuple[int, str]] = set()
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            top = name.split(".", 1)[0]
            if top in PACKAGES:
                found.add((node.lineno, top))
    return found


def violations(package: str, folder: Path) -> list[str]:
    """Every import in `folder` (the package `package`) of a package it may not import."""
    wrong = []
    for path in sorted(folder.rglob("*.py")):
        for line, imported in sorted(imported_packages(path.read_text())):
            if imported not in ALLOWED[package]:
                wrong.append(f"{path.relative_to(folder.parent)}:{line} imports {imported}")
    return wrong


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_imports_follow_the_layers(package: str) -> None:
    assert PACKAGES[package].is_dir()
    assert violations(package, PACKAGES[package]) == []


def test_a_wrong_import_is_found(tmp_path: Path) -> None:
    """The check itself: an orchestrator module importing the CLI lazily, one importing the
    adapter at the top, and a common module importing the orchestrator are all reported."""
    folder = tmp_path / "swarm_orchestrator"
    (folder / "api").mkdir(parents=True)
    (folder / "api" / "app.py").write_text(
        "import swarm_common.git\n\ndef f():\n    from swarm_cli.main import main\n"
    )
    (folder / "runner.py").write_text("from swarm_adapter import worker\n")
    assert violations("swarm_orchestrator", folder) == [
        "swarm_orchestrator/api/app.py:4 imports swarm_cli",
        "swarm_orchestrator/runner.py:1 imports swarm_adapter",
    ]
    common = tmp_path / "swarm_common"
    common.mkdir()
    (common / "x.py").write_text("import swarm_orchestrator.settings as s\n")
    assert violations("swarm_common", common) == ["swarm_common/x.py:1 imports swarm_orchestrator"]
