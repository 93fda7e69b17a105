"""Which gates run: a session's commands, the gaps filled from what a person would expect
of the repository's files (`detect_gates`). Files are read, never run."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from swarm_common.gates._model import DEFAULT_TIMEOUT_S, GATE_NAMES, GateCommand, GateConfig

_MAX_READ_BYTES = 1024 * 1024
_NPM_DEFAULT_TEST = "Error: no test specified"
_MAKEFILES = ("GNUmakefile", "makefile", "Makefile")  # the order GNU make looks for them
_MAKE_RULE = re.compile(r"([A-Za-z0-9_.%/ -]+?)\s*::?(?!=)")

Found = dict[str, tuple[str, str]]
"""gate name -> (command, tool)"""


def _read(path: Path) -> str | None:
    """A marker file's text, or None when it is missing or unreadable; detection never
    raises."""
    try:
        if not path.is_file():
            return None
        with path.open("rb") as file:
            return file.read(_MAX_READ_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return None


def _has_section(text: str | None, *prefixes: str) -> bool:
    """Whether an INI or TOML file has a section starting with one of `prefixes`."""
    if not text:
        return False
    return any(line.lstrip().startswith(prefixes) for line in text.splitlines())


def _detect_python(root: Path) -> Found:
    pyproject = _read(root / "pyproject.toml")
    setup_cfg = _read(root / "setup.cfg")
    is_python = pyproject is not None or setup_cfg is not None or (root / "setup.py").is_file()
    found: Found = {}
    ruff_config = (
        _has_section(pyproject, "[tool.ruff")
        or (root / "ruff.toml").is_file()
        or (root / ".ruff.toml").is_file()
    )
    if ruff_config:
        found["lint"] = ("ruff check .", "ruff")
    pytest_config = (
        _has_section(pyproject, "[tool.pytest")
        or _has_section(setup_cfg, "[tool:pytest]")
        or _has_section(_read(root / "tox.ini"), "[pytest]")
        or any((root / name).is_file() for name in ("pytest.ini", ".pytest.ini", "conftest.py"))
    )
    has_tests = (root / "tests").is_dir() or (root / "test").is_dir()
    if pytest_config or (is_python and has_tests):
        found["test"] = ("pytest -q", "pytest")
    return found


def _detect_npm(root: Path) -> Found:
    text = _read(root / "package.json")
    if text is None:
        return {}
    try:
        package = json.loads(text)
    except ValueError:
        return {}
    scripts = package.get("scripts") if isinstance(package, dict) else None
    if not isinstance(scripts, dict):
        return {}

    def defined(name: str) -> bool:
        script = scripts.get(name)
        return isinstance(script, str) and bool(script.strip())

    found: Found = {}
    if defined("lint"):
        found["lint"] = ("npm run lint", "npm")
    if defined("test") and _NPM_DEFAULT_TEST not in scripts["test"]:
        found["test"] = ("npm test", "npm")
    if defined("build"):
        found["build"] = ("npm run build", "npm")
    return found


def _detect_marker(marker: str, gates: Found) -> Callable[[Path], Found]:
    """A detector for an ecosystem whose marker file brings the same gates to every project."""

    def detect(root: Path) -> Found:
        return dict(gates) if (root / marker).is_file() else {}

    return detect


def _make_targets(text: str) -> set[str]:
    """Targets of the rules in a makefile: `lint:`, `lint test: deps`, `lint::`; not
    recipes (indented), variables (`lint := x`) or special targets (`.PHONY: lint`)."""
    targets: set[str] = set()
    for line in text.splitlines():
        if line[:1] in ("\t", " ", "#", "."):
            continue
        if match := _MAKE_RULE.match(line):
            targets.update(match.group(1).split())
    return targets


def _detect_make(root: Path) -> Found:
    for name in _MAKEFILES:
        if (text := _read(root / name)) is not None:
            targets = _make_targets(text)
            return {gate: (f"make {gate}", "make") for gate in GATE_NAMES if gate in targets}
    return {}


_DETECTORS: tuple[Callable[[Path], Found], ...] = (
    _detect_python,
    _detect_npm,
    _detect_marker(
        "Cargo.toml",
        {
            "lint": ("cargo clippy --all-targets -- -D warnings", "cargo-clippy"),
            "test": ("cargo test", "cargo"),
            "build": ("cargo build", "cargo"),
        },
    ),
    _detect_marker(
        "go.mod",
        {
            "lint": ("go vet ./...", "go"),
            "test": ("go test ./...", "go"),
            "build": ("go build ./...", "go"),
        },
    ),
    _detect_make,
)


def detect_gates(root: Path, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, GateCommand]:
    """The gates a person would expect from the files at the root of `root`, in run order.

    For each gate the first ecosystem below that has it wins, so a Python project without a
    ruff configuration still gets `make lint` from its Makefile:

    1. Python (`pyproject.toml`, `setup.cfg` or `setup.py`): lint `ruff check .` when ruff
       is configured (`[tool.ruff…]` in pyproject, `ruff.toml`, `.ruff.toml`); test
       `pytest -q` when there is a `tests`/`test` directory, or pytest is configured
       (`[tool.pytest…]`, `pytest.ini`, `.pytest.ini`, `conftest.py`, `[tool:pytest]` in
       setup.cfg, `[pytest]` in tox.ini; these count even without a Python marker). No build.
    2. npm (`package.json`): `npm run lint`, `npm test`, `npm run build` for each script it
       defines; npm's placeholder test script does not count, a malformed file defines none.
    3. Cargo (`Cargo.toml`): `cargo clippy --all-targets -- -D warnings` (needs
       `cargo-clippy`, which not every Rust install has), `cargo test`, `cargo build`.
    4. Go (`go.mod`): `go vet ./...`, `go test ./...`, `go build ./...`.
    5. make (the makefile GNU make would read: `GNUmakefile`, `makefile`, `Makefile`):
       `make lint`/`make test`/`make build` for each such target a rule defines.

    Files are read, never run; a missing or unreadable root detects nothing.
    """
    found: Found = {}
    for detector in _DETECTORS:
        for name, command in detector(root).items():
            found.setdefault(name, command)
    return {
        name: GateCommand(
            name=name,
            command=found[name][0],
            source="detected",
            tool=found[name][1],
            timeout_s=timeout_s,
        )
        for name in GATE_NAMES
        if name in found
    }


def plan_gates(
    config: GateConfig, root: Path, only: Sequence[str] | None = None
) -> list[GateCommand]:
    """The gates to run in `root`, in order. A session's command wins over detection; an
    empty (or blank) one means no such gate. `only` narrows the plan (a task's `gates`);
    names it holds that are not gates are ignored here, they are refused where specs are
    validated."""
    if config.mode == "skip":
        return []
    wanted = [name for name in GATE_NAMES if only is None or name in only]
    commands: dict[str, str | None] = {
        "lint": config.lint,
        "test": config.test,
        "build": config.build,
    }
    needs_detection = config.detect and any(commands[name] is None for name in wanted)
    detected = detect_gates(root) if needs_detection else {}
    plan: list[GateCommand] = []
    for name in wanted:
        timeout_s = float(config.timeouts.get(name, config.timeout_s))
        command = commands[name]
        if command is None:
            if name in detected:
                plan.append(dataclasses.replace(detected[name], timeout_s=timeout_s))
        elif command.strip():
            plan.append(GateCommand(name, command, "session", None, timeout_s))
    return plan
