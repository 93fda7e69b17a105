"""A watchdog beside each process that runs commands (an adapter's agents, setup and
gates), so that no command outlives that process, even when it dies by `kill -9`.

`procs.run_process` starts every command in a process group of its own, its environment
marked `SWARM_OWNER=<token>`, and has started one watchdog per process beforehand:
`python -I -S supervise.py <parent-pid> <token>`. The watchdog asks the kernel for a signal
when its parent dies (`PR_SET_PDEATHSIG`) and sleeps. When the parent dies it SIGKILLs the
process group of every process that holds the mark, then every such process (what an agent
started in sessions of its own, such as Codex's sandbox helper, still holds it; what a
command started in its group without it, as `env -i` would, goes with its group), and exits.
A plain `setpriv --pdeathsig` on each command would kill only the command itself, leaving
its children (a shell's commands, a CLI's tools) to run on.

One watchdog for the life of its parent, not one supervisor process per command: a Python
start is 8 ms of CPU and more, on the path of every attempt. It starts once, so it imports
next to nothing: no package of ours, not `signal` (its enums cost more than the rest;
`_signal` has the same functions and numbers), not `pathlib`.
"""

import _signal as signal  # type: ignore[import-not-found]  # no stub; the same API as signal
import ctypes
import os
import sys

__all__ = ["MARK", "kill_marked", "kill_strays", "main"]

MARK = "SWARM_OWNER"
"""The variable whose value (a token per watched process) marks every command it runs."""
PR_SET_PDEATHSIG = 1
PARENT_DIED = signal.SIGUSR2
"""The watchdog's own "parent died" signal."""


def kill_strays(marker: str) -> list[int]:
    """SIGKILL every process (but this one) whose environment holds `marker`
    (`SWARM_WORKTREE=<path>`, set for every agent): what an agent left behind outside its
    process group. A person's shell that merely sits in the worktree is left alone. Linux
    only; elsewhere it finds nothing."""
    return [pid for pid in _carrying(marker) if _kill(pid)]


def kill_marked(marker: str) -> list[int]:
    """SIGKILL the process group of every process whose environment holds `marker`, then
    every such process; the pids of the marked ones."""
    marked = _carrying(marker)
    for pid in marked:
        try:
            group = os.getpgid(pid)
        except OSError:
            continue
        if group not in (os.getpgid(0), 0, 1):
            _kill(group, group=True)
    for pid in marked:
        _kill(pid)
    return marked


def _kill(pid: int, *, group: bool = False) -> bool:
    try:
        (os.killpg if group else os.kill)(pid, signal.SIGKILL)
    except OSError:
        return False
    return True


def _carrying(marker: str) -> list[int]:
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    needle = marker.encode() + b"\0"
    me = os.getpid()
    found: list[int] = []
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        try:
            environ = _read(f"/proc/{name}/environ")
        except OSError:
            continue
        if environ.startswith(needle) or b"\0" + needle in environ:
            found.append(int(name))
    return found


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _ignore(_signum: int, _frame: object) -> None:
    """SIGTERM, SIGINT and SIGHUP sent to the parent's group leave the watchdog be: it goes
    when its parent does, after the commands."""


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[0].isdigit() or not argv[1].isalnum():
        sys.stderr.write("usage: supervise.py PARENT_PID TOKEN\n")
        return 2
    parent, marker = int(argv[0]), f"{MARK}={argv[1]}"

    def parent_died(*_: object) -> None:
        kill_marked(marker)
        os._exit(0)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _ignore)
    signal.signal(PARENT_DIED, parent_died)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(PARENT_DIED))
    if os.getppid() != parent:  # the parent died before the kernel could be told
        parent_died()
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
