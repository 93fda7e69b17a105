"""Quality gates: the lint, test and build commands that judge an agent's work. This module
owns a session's gate settings (`GateConfig`), guessing the commands from a repository's
files, turning settings into a plan, running a plan in a worktree (each gate's whole output
to a log file, its tail in the result), and what a result means: whether it fails the
attempt, and the text that tells the agent's next attempt what went wrong.

The adapter runs gates in a task's worktree once the agent has finished; the orchestrator
runs them on the integration branch at a checkpoint.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import shutil
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, BinaryIO, Literal

from pydantic import BaseModel, ConfigDict, Field

from swarm_common.procs import ProcessResult, run_process
from swarm_common.specs import Text
from swarm_common.text import clean_text

__all__ = [
    "GATE_NAMES",
    "GateCommand",
    "GateConfig",
    "GateMode",
    "GateName",
    "GateResult",
    "GateSource",
    "GateStatus",
    "blocking_failures",
    "detect_gates",
    "feedback",
    "plan_gates",
    "run_gates",
]

log = logging.getLogger(__name__)

GateName = Literal["lint", "test", "build"]
GATE_NAMES: tuple[GateName, ...] = ("lint", "test", "build")
"""Every gate there is, in the order they run."""

GateMode = Literal["strict", "permissive", "skip"]
GateSource = Literal["session", "detected"]
GateStatus = Literal["passed", "failed", "timeout", "skipped", "cancelled"]

MAX_TIMEOUT_S = 24 * 3600
DEFAULT_TIMEOUT_S = 600
_FAILING: frozenset[str] = frozenset({"failed", "timeout"})

GateShellCommand = Annotated[Text, Field(max_length=4000)]
GateTimeout = Annotated[int, Field(ge=1, le=MAX_TIMEOUT_S)]


class GateConfig(BaseModel):
    """A session's `settings["gates"]`: which gates run, and whether a failing one fails the
    attempt (`strict`), is only reported (`permissive`), or no gate runs at all (`skip`)."""

    model_config = ConfigDict(extra="forbid")

    mode: GateMode = "strict"
    lint: GateShellCommand | None = Field(
        None, description="Run with bash; null detects it from the repository, '' means none."
    )
    test: GateShellCommand | None = Field(
        None, description="Run with bash; null detects it from the repository, '' means none."
    )
    build: GateShellCommand | None = Field(
        None, description="Run with bash; null detects it from the repository, '' means none."
    )
    detect: bool = Field(True, description="Fill the gates left null from the repository's files.")
    timeout_s: GateTimeout = Field(DEFAULT_TIMEOUT_S, description="Per gate.")
    timeouts: dict[GateName, GateTimeout] = Field(
        default_factory=dict, description="Per-gate overrides of `timeout_s`."
    )


@dataclass(frozen=True)
class GateCommand:
    """One gate of a plan."""

    name: str
    command: str
    """Run with `bash -c`."""
    source: GateSource
    tool: str | None
    """For a detected gate, the executable that must be on PATH; without it the gate is
    skipped, since nobody asked for it. None for a session's own command."""
    timeout_s: float


class GateResult(BaseModel):
    """The outcome of one gate; it travels in Redis events and is stored in JSONB, so every
    string in it is free of NUL."""

    name: str
    command: str
    source: str
    status: GateStatus
    exit_code: int | None = None
    duration_s: float = 0.0
    output_tail: str = ""
    log_path: str | None = None
    reason: str = ""


# --- detection ---------------------------------------------------------------------------

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


def _detect_cargo(root: Path) -> Found:
    if not (root / "Cargo.toml").is_file():
        return {}
    return {
        "lint": ("cargo clippy --all-targets -- -D warnings", "cargo-clippy"),
        "test": ("cargo test", "cargo"),
        "build": ("cargo build", "cargo"),
    }


def _detect_go(root: Path) -> Found:
    if not (root / "go.mod").is_file():
        return {}
    return {
        "lint": ("go vet ./...", "go"),
        "test": ("go test ./...", "go"),
        "build": ("go build ./...", "go"),
    }


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
    _detect_cargo,
    _detect_go,
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


# --- running -----------------------------------------------------------------------------


class _GateLog:
    """The whole output of one gate, as it comes (through `redact`). A disk that fails stops
    the log, not the gate: the tail in the result still tells what happened."""

    def __init__(self, path: Path, redact: Callable[[bytes], bytes] | None = None) -> None:
        self.path = path
        self.redact = redact
        self.file: BinaryIO | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file = path.open("wb")
        except OSError:
            log.warning("cannot write a gate log", extra={"path": str(path)}, exc_info=True)

    async def write(self, line: bytes) -> None:
        if self.file is None:
            return
        try:
            self.file.write(self.redact(line) if self.redact else line)
        except OSError:
            log.warning("gate log write failed", extra={"path": str(self.path)}, exc_info=True)
            self.close()

    def close(self) -> None:
        if self.file is not None:
            try:
                self.file.close()
            except OSError:
                log.warning("gate log close failed", extra={"path": str(self.path)})
            self.file = None


def _shown_path(path: Path, relative_to: Path | None) -> str:
    if relative_to is not None:
        try:
            return str(path.relative_to(relative_to))
        except ValueError:
            pass
    return str(path)


def _not_run(gate: GateCommand, status: GateStatus, reason: str) -> GateResult:
    return GateResult(
        name=gate.name,
        command=clean_text(gate.command),
        source=gate.source,
        status=status,
        reason=reason,
    )


def _outcome(done: ProcessResult, gate: GateCommand) -> tuple[GateStatus, str]:
    if done.cancelled:
        return "cancelled", "cancelled"
    if done.timed_out:
        return "timeout", f"timed out after {gate.timeout_s:g}s"
    if done.exit_code == 0:
        return "passed", ""
    if done.exit_code is not None and done.exit_code < 0:
        try:
            return "failed", f"killed by {signal.Signals(-done.exit_code).name}"
        except ValueError:
            return "failed", f"killed by signal {-done.exit_code}"
    return "failed", f"exit code {done.exit_code}"


async def _run_gate(
    gate: GateCommand,
    *,
    cwd: Path,
    env: dict[str, str],
    log_path: Path,
    cancel: asyncio.Event,
    tail_bytes: int,
    kill_grace_s: float,
    relative_to: Path | None,
    redact: Callable[[bytes], bytes] | None = None,
) -> GateResult:
    gate_log = _GateLog(log_path, redact)
    shown_log = _shown_path(log_path, relative_to) if gate_log.file is not None else None
    try:
        done = await run_process(
            ["bash", "-c", gate.command],
            cwd=cwd,
            env=env,
            timeout_s=gate.timeout_s,
            cancel=cancel,
            kill_grace_s=kill_grace_s,
            tail_bytes=tail_bytes,
            on_line=gate_log.write,
        )
    except OSError as exc:
        result = _not_run(gate, "failed", clean_text(f"could not start: {exc}"))
        return result.model_copy(update={"log_path": shown_log})
    finally:
        gate_log.close()
    status, reason = _outcome(done, gate)
    return GateResult(
        name=gate.name,
        command=clean_text(gate.command),
        source=gate.source,
        status=status,
        exit_code=done.exit_code,
        duration_s=round(done.duration_s, 3),
        output_tail=clean_text(done.tail),
        log_path=shown_log,
        reason=reason,
    )


async def run_gates(
    plan: Sequence[GateCommand],
    *,
    cwd: Path,
    env: dict[str, str],
    log_dir: Path,
    cancel: asyncio.Event,
    tail_bytes: int = 8192,
    kill_grace_s: float = 5.0,
    relative_to: Path | None = None,
    stop_on_failure: bool = False,
    redact: Callable[[bytes], bytes] | None = None,
) -> list[GateResult]:
    """Run `plan` in order in `cwd`, one result per gate. Each gate's whole output goes to
    `log_dir/gate-<name>.log`, through `redact` when given. A detected gate whose tool is not
    on `env`'s PATH is skipped. Once `cancel` is set, the running gate is stopped and the rest
    are cancelled unrun; with `stop_on_failure`, gates after a failed one are skipped. `CI=1`
    is added to `env` (unless it is set) so tools do not wait for a person."""
    gate_env = {**env}
    gate_env.setdefault("CI", "1")
    results: list[GateResult] = []
    failed = False
    for gate in plan:
        if cancel.is_set():
            results.append(_not_run(gate, "cancelled", "cancelled"))
        elif failed and stop_on_failure:
            results.append(_not_run(gate, "skipped", "an earlier gate failed"))
        elif gate.tool is not None and shutil.which(gate.tool, path=env.get("PATH")) is None:
            results.append(_not_run(gate, "skipped", f"{gate.tool} is not installed"))
        else:
            result = await _run_gate(
                gate,
                cwd=cwd,
                env=gate_env,
                log_path=log_dir / f"gate-{gate.name}.log",
                cancel=cancel,
                tail_bytes=tail_bytes,
                kill_grace_s=kill_grace_s,
                relative_to=relative_to,
                redact=redact,
            )
            results.append(result)
            failed = failed or result.status in _FAILING
    return results


# --- judging -----------------------------------------------------------------------------


def blocking_failures(results: Sequence[GateResult], mode: GateMode) -> list[GateResult]:
    """The results that fail an attempt: a failed or timed-out gate, in strict mode only."""
    if mode != "strict":
        return []
    return [result for result in results if result.status in _FAILING]


_MAX_COMMAND_SHOWN = 200
_CUT = "…"


def _code_span(text: str) -> str:
    """`text` as inline Markdown code, whatever backticks it holds."""
    ticks = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    return f"{ticks} {text} {ticks}" if "`" in text else f"`{text}`"


def _header(result: GateResult) -> str:
    if result.status == "timeout":
        verdict = result.reason or "timed out"
    elif result.exit_code is not None:
        verdict = f"failed (exit {result.exit_code})"
    else:
        verdict = f"failed ({result.reason})" if result.reason else "failed"
    command = result.command
    if len(command) > _MAX_COMMAND_SHOWN:
        command = command[: _MAX_COMMAND_SHOWN - 1] + _CUT
    return f"### Gate `{result.name}` {verdict}: {_code_span(command)}"


def _fence(text: str) -> str:
    longest = max((len(run) for run in re.findall(r"`{3,}", text)), default=0)
    return "`" * max(3, longest + 1)


def _shares(lengths: list[int], budget: int) -> list[int]:
    """Split `budget` characters among texts of `lengths`: short texts keep all of theirs,
    long ones share what is left equally."""
    shares = [0] * len(lengths)
    left = max(budget, 0)
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    for position, index in enumerate(order):
        shares[index] = min(lengths[index], left // (len(order) - position))
        left -= shares[index]
    return shares


def _keep_end(text: str, chars: int) -> str:
    if len(text) <= chars:
        return text
    if chars <= len(_CUT):
        return ""
    return _CUT + text[len(text) - chars + len(_CUT) :]


def feedback(results: Sequence[GateResult], *, limit: int = 8000) -> str:
    """What a retry prompt says about the gates that failed or timed out: for each, a
    heading with the command and the end of its output, where errors are. At most `limit`
    characters: outputs are cut from the front to fit. Empty when no gate failed."""
    failing = [result for result in results if result.status in _FAILING]
    if not failing:
        return ""
    tails = [result.output_tail.rstrip() or "(no output)" for result in failing]
    headers = [_header(result) for result in failing]
    fences = [_fence(tail) for tail in tails]
    # each section: header \n fence \n tail \n fence; sections joined by a blank line
    overhead = sum(len(h) + 2 * len(f) + 3 for h, f in zip(headers, fences, strict=True))
    overhead += 2 * (len(failing) - 1)
    shares = _shares([len(tail) for tail in tails], limit - overhead)
    sections = [
        f"{header}\n{fence}\n{_keep_end(tail, share)}\n{fence}"
        for header, fence, tail, share in zip(headers, fences, tails, shares, strict=True)
    ]
    return "\n\n".join(sections)[:limit]
