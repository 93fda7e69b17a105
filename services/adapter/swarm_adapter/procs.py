"""Running an agent process: its own process group, stdin from /dev/null, a timeout, a
cancel signal, and the whole group killed (TERM, then KILL after a grace period) when it
must stop, so no child of the agent outlives its attempt."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from swarm_common.text import clean_text

__all__ = ["ProcessResult", "kill_group", "kill_strays", "run_process"]

log = logging.getLogger(__name__)

LineHandler = Callable[[bytes], Awaitable[None]]
_SETPRIV = shutil.which("setpriv") if sys.platform.startswith("linux") else None


@dataclass(frozen=True)
class ProcessResult:
    exit_code: int | None
    timed_out: bool
    cancelled: bool
    tail: str
    duration_s: float


class _Tail:
    """The last `limit` bytes of a stream."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buffer = bytearray()

    def add(self, chunk: bytes) -> None:
        self.buffer.extend(chunk)
        if len(self.buffer) > 2 * self.limit:
            del self.buffer[: len(self.buffer) - self.limit]

    def text(self) -> str:
        return clean_text(bytes(self.buffer[-self.limit :]).decode("utf-8", errors="replace"))


def kill_group(pgid: int, sig: signal.Signals) -> bool:
    """Signal a process group; False when it no longer exists."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        log.warning("cannot signal process group", extra={"pgid": pgid})
        return False


async def _stop_group(proc: asyncio.subprocess.Process, grace_s: float) -> None:
    if proc.returncode is None:
        kill_group(proc.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), timeout=grace_s)
    kill_group(proc.pid, signal.SIGKILL)
    await proc.wait()


def _with_parent_death(argv: Sequence[str]) -> list[str]:
    """Prefix `setpriv --pdeathsig KILL` where util-linux has it, so the agent dies with the
    adapter even on `kill -9`. (A `preexec_fn` would do the same but is unsafe in a process
    that runs threads, as the adapter does for git.)"""
    setpriv = _SETPRIV
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else list(argv)


async def run_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str],
    timeout_s: float,
    cancel: asyncio.Event,
    kill_grace_s: float = 5.0,
    tail_bytes: int = 8192,
    on_line: LineHandler | None = None,
) -> ProcessResult:
    """Run `argv` to its end, its timeout or `cancel`, whichever comes first."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    proc = await asyncio.create_subprocess_exec(
        *_with_parent_death(argv),
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
        limit=1 << 20,
    )
    tail = _Tail(tail_bytes)
    reader = asyncio.create_task(_read(proc, tail, on_line))
    waiter = asyncio.create_task(proc.wait())
    canceller = asyncio.create_task(cancel.wait())
    timed_out = cancelled = False
    try:
        done, _ = await asyncio.wait(
            {waiter, canceller}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        if waiter not in done:
            cancelled = canceller in done
            timed_out = not cancelled
        await _stop_group(proc, kill_grace_s if not done or cancelled else 0.0)
    finally:
        canceller.cancel()
        if proc.returncode is None:  # we are being cancelled ourselves
            kill_group(proc.pid, signal.SIGKILL)
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
        try:
            await asyncio.wait_for(asyncio.shield(reader), timeout=2.0)
        except TimeoutError:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    code = proc.returncode if not (timed_out or cancelled) else None
    return ProcessResult(
        exit_code=code,
        timed_out=timed_out,
        cancelled=cancelled,
        tail=tail.text(),
        duration_s=loop.time() - started,
    )


async def _read(proc: asyncio.subprocess.Process, tail: _Tail, on_line: LineHandler | None) -> None:
    assert proc.stdout is not None
    while True:
        try:
            line = await proc.stdout.readline()
        except ValueError:  # a line over the stream limit: take it in pieces
            line = await proc.stdout.read(1 << 20)
        if not line:
            return
        tail.add(line)
        if on_line is not None:
            try:
                await on_line(line)
            except Exception:
                log.exception("output handler failed; output is still collected")


def kill_strays(path: Path) -> list[int]:
    """SIGKILL every process (and its whole session) that still works in `path` or names it
    on its command line: what an agent left behind outside its process group (Codex's
    sandbox helper runs in sessions of its own). Never touches this process's session.
    Linux only; elsewhere it finds nothing."""
    proc_root = Path("/proc")
    if not proc_root.is_dir():
        return []
    marker, own_session = str(path).encode(), os.getsid(0)
    # `…/t1-1` must not match `…/t1-10`: the path ends where a separator or the text does.
    named_in = re.compile(re.escape(marker) + rb"(?=$|[/\0\s'\"])")
    sessions: dict[int, list[int]] = {}
    named: set[int] = set()
    for entry in proc_root.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            session = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[3])
            sessions.setdefault(session, []).append(int(entry.name))
            cwd = os.readlink(entry / "cwd").encode()
            if named_in.match(cwd) or named_in.search((entry / "cmdline").read_bytes()):
                named.add(session)
        except (OSError, ValueError, IndexError):
            continue
    killed: list[int] = []
    for session in named - {own_session}:
        for pid in sessions[session]:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except (ProcessLookupError, PermissionError):
                continue
    if killed:
        log.warning("killed processes an agent left behind", extra={"pids": killed[:20]})
    return killed
