"""Running a plan in a worktree: each gate a `bash -c` child (`swarm_common.procs`), its whole
output to a log file, its tail and its outcome in a `GateResult`."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from swarm_common.gates._model import FAILING, GateCommand, GateResult, GateStatus
from swarm_common.private import private_dir
from swarm_common.procs import ProcessResult, run_process
from swarm_common.text import clean_text

log = logging.getLogger(__name__)


class _GateLog:
    """The whole output of one gate, as it comes (through `redact`), in a file only its owner
    reads (0600, in a 0700 folder). A disk that fails stops the log, not the gate: the tail
    in the result still tells what happened."""

    def __init__(self, path: Path, redact: Callable[[bytes], bytes] | None = None) -> None:
        self.path = path
        self.redact = redact
        self.file: BinaryIO | None = None
        try:
            private_dir(path.parent)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            os.fchmod(fd, 0o600)
            self.file = os.fdopen(fd, "wb")
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


def refuse_gates(plan: Sequence[GateCommand], reason: str) -> list[GateResult]:
    """The results of a plan that may not run here: a gate the session asked for fails (a
    check it relies on did not happen), a detected one is skipped."""
    return [
        _not_run(gate, "failed" if gate.source == "session" else "skipped", reason) for gate in plan
    ]


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
    wrap: Callable[[list[str]], list[str]] | None = None,
) -> GateResult:
    gate_log = _GateLog(log_path, redact)
    shown_log = _shown_path(log_path, relative_to) if gate_log.file is not None else None
    try:
        argv = ["bash", "-c", gate.command]
        done = await run_process(
            wrap(argv) if wrap else argv,
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
    wrap: Callable[[list[str]], list[str]] | None = None,
) -> list[GateResult]:
    """Run `plan` in order in `cwd`, one result per gate. Each gate's whole output goes to
    `log_dir/gate-<name>.log`, through `redact` when given. A detected gate whose tool is not
    on `env`'s PATH is skipped. Once `cancel` is set, the running gate is stopped and the rest
    are cancelled unrun; with `stop_on_failure`, gates after a failed one are skipped; `wrap`
    turns each gate's argv into the one that runs it (confined, say). `CI=1`
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
                wrap=wrap,
            )
            results.append(result)
            failed = failed or result.status in FAILING
    return results
