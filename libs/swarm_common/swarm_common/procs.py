"""Running a child process (an agent, a setup command, a quality gate): its own process
group, stdin from /dev/null, a timeout, a cancel signal, and the whole group killed (TERM,
then KILL after a grace period) when it must stop, so no child outlives its run; and the
process's watchdog (`swarm_common.supervise`), started with its first run, so no child
outlives the process either, even when it dies by `kill -9`."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from swarm_common import supervise
from swarm_common.text import clean_text

__all__ = [
    "OutputTail",
    "ProcessResult",
    "SignalledArgv",
    "kill_group",
    "kill_strays",
    "run_process",
    "watched",
]

log = logging.getLogger(__name__)

LineHandler = Callable[[bytes], Awaitable[None]]
_SUPERVISOR = supervise.__file__


class SignalledArgv(list[str]):
    """An argv whose exit status 128+N means its command died of signal N: a sandbox's
    (`bwrap` reports its command's death so). `run_process` gives it as -N, as for any
    command killed by a signal."""


@dataclass(frozen=True)
class ProcessResult:
    exit_code: int | None
    timed_out: bool
    cancelled: bool
    tail: str
    duration_s: float


class OutputTail:
    """The last `limit` bytes of a stream."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buffer = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
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
        await asyncio.wait([asyncio.ensure_future(proc.wait())], timeout=grace_s)
    kill_group(proc.pid, signal.SIGKILL)
    await proc.wait()


class _Watchdog:
    """This process's watchdog: its token and pid (per process: a forked child starts its
    own)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.owner = 0
        self.token = ""
        self.pid = 0

    def mark(self) -> str:
        """`SWARM_OWNER`'s value for the next command; the watchdog started first (again,
        should it have died: the commands it watched lose their guard, and a warning says
        so)."""
        with self.lock:
            if self.owner == os.getpid():
                if self._alive():
                    return self.token
                log.warning("the process watchdog had exited; started again")
            self.owner, self.token = os.getpid(), uuid.uuid4().hex
            argv = [sys.executable, "-I", "-S", _SUPERVISOR, str(os.getpid()), self.token]
            # posix_spawn, not Popen: nothing here waits for it, and a Popen object would
            # warn at exit that its process still runs (it does, for a moment: by design).
            self.pid = os.posix_spawn(
                argv[0],
                argv,
                {},  # it needs none, and none of this process's secrets go its way
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                ],
                setsid=True,
            )
            return self.token

    def _alive(self) -> bool:
        try:
            return os.waitpid(self.pid, os.WNOHANG) == (0, 0)
        except ChildProcessError:
            return False


_WATCHDOG = _Watchdog()


def watched(env: dict[str, str]) -> dict[str, str]:
    """`env` marked for this process's watchdog (started if need be): what runs with it is
    killed, with its process group, when this process dies."""
    return {**env, supervise.MARK: _WATCHDOG.mark()}


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
    """Run `argv` to its end, its timeout or `cancel`, whichever comes first.

    The output goes through a pipe of our own rather than asyncio's: asyncio's `wait()`
    returns only once every holder of the output pipe closed it, so a child left behind
    (`cmd &`, a daemon) would hold the run open past its end, its timeout and its cancel.
    When the command ends, its process group is killed; what escaped the group is the
    caller's to kill (`kill_strays`)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    read_fd, write_fd = os.pipe()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=watched(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=write_fd,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        os.close(read_fd)
        if not argv or exc.filename not in (None, argv[0]):
            raise  # the working directory, not the command
        return ProcessResult(
            exit_code=127 if isinstance(exc, FileNotFoundError) else 126,
            timed_out=False,
            cancelled=False,
            tail=f"cannot run {argv[0]}: {exc.strerror}\n",
            duration_s=loop.time() - started,
        )
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    output = asyncio.StreamReader(limit=MAX_LINE_BYTES, loop=loop)
    pipe, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(output, loop=loop), os.fdopen(read_fd, "rb", 0)
    )
    tail = OutputTail(tail_bytes)
    reader = asyncio.create_task(_read(output, tail, on_line))
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
        await _drain(reader, tail)
        reader.cancel()
        pipe.close()
    code = proc.returncode if not (timed_out or cancelled) else None
    if isinstance(argv, SignalledArgv) and code is not None and 128 < code <= 128 + 64:
        code = 128 - code
    return ProcessResult(
        exit_code=code,
        timed_out=timed_out,
        cancelled=cancelled,
        tail=tail.text(),
        duration_s=loop.time() - started,
    )


async def _drain(reader: asyncio.Task[None], tail: OutputTail, limit_s: float = 2.0) -> None:
    """Let the reader take the rest of the output: until the end of the pipe, or while
    bytes still arrive (an escaped child may hold the pipe open forever), at most `limit_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    seen = -1
    while not reader.done() and tail.total != seen and loop.time() < deadline:
        seen = tail.total
        await asyncio.wait([reader], timeout=0.1)


MAX_LINE_BYTES = 16 * 1024 * 1024
"""A longer line is handed over cut to this length, and reading resumes at its end."""
_CHUNK = 64 * 1024


async def _read(
    output: asyncio.StreamReader, tail: OutputTail, on_line: LineHandler | None
) -> None:
    """Split the output into lines ourselves: `readline()` drops a line longer than its
    limit, and what follows it comes out glued together."""
    pending = bytearray()
    skipping = False  # inside the rest of an overlong line
    while chunk := await output.read(_CHUNK):
        tail.add(chunk)
        pending.extend(chunk)
        while (end := pending.find(b"\n")) >= 0:
            line = bytes(pending[: end + 1])
            del pending[: end + 1]
            if not skipping:
                await _deliver(on_line, line)
            skipping = False
        if len(pending) > MAX_LINE_BYTES:
            if not skipping:
                await _deliver(on_line, bytes(pending[:MAX_LINE_BYTES]) + b"\n")
            skipping = True
            pending.clear()
    if pending and not skipping:
        await _deliver(on_line, bytes(pending))


async def _deliver(on_line: LineHandler | None, line: bytes) -> None:
    if on_line is None:
        return
    try:
        await on_line(line)
    except Exception:
        log.exception("output handler failed; output is still collected")


def kill_strays(marker: str) -> list[int]:
    """SIGKILL every process whose environment holds `marker`; see `supervise.kill_strays`."""
    killed = supervise.kill_strays(marker)
    if killed:
        log.warning("killed processes an agent left behind", extra={"pids": killed[:20]})
    return killed
