"""A tiny supervisor between an adapter and each child it runs (agent, setup, gate), so that
no child outlives an adapter that dies, even by `kill -9`.

`run_process` starts `python -I -S supervise.py <parent-pid> -- argv...` as the leader of a
new process group. The supervisor asks the kernel for a signal when its parent dies
(`PR_SET_PDEATHSIG`), starts the real command in its own group, waits for it and exits as it
did (same code, or the same signal). When the parent dies it kills every process that holds
the run's `SWARM_WORKTREE=` marker (what an agent started in sessions of its own), then its
whole group, itself included. A plain `setpriv --pdeathsig` would kill only the direct
child, leaving its children (a shell's commands, a CLI's tools) to run on.

It starts once per command, so it imports next to nothing: no package of ours, not
`subprocess` (the child is `posix_spawn`ed), not `signal` (its enums cost more than the rest;
`_signal` has the same functions and numbers), not `pathlib`. Measured with
`python -X importtime`: 26 ms of CPU per run with those imports, 12 ms without.
"""

import _signal as signal  # type: ignore[import-not-found]  # no stub; the same API as signal
import ctypes
import os
import sys

__all__ = ["kill_strays", "main"]

PR_SET_PDEATHSIG = 1
PARENT_DIED = signal.SIGUSR2
"""The supervisor's own "parent died" signal; it never reaches the child."""


def kill_strays(marker: str) -> list[int]:
    """SIGKILL every process (but this one) whose environment holds `marker`
    (`SWARM_WORKTREE=<path>`, set for every agent): what an agent left behind outside its
    process group, such as Codex's sandbox helper, which runs in sessions of its own. A
    person's shell that merely sits in the worktree is left alone. Linux only; elsewhere it
    finds nothing."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    needle = marker.encode() + b"\0"
    me = os.getpid()
    killed: list[int] = []
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        try:
            environ = _read(f"/proc/{name}/environ")
            if environ.startswith(needle) or b"\0" + needle in environ:
                os.kill(int(name), signal.SIGKILL)
                killed.append(int(name))
        except OSError:
            continue
    return killed


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _kill_everything() -> None:
    worktree = os.environ.get("SWARM_WORKTREE")
    if worktree:
        kill_strays(f"SWARM_WORKTREE={worktree}")
    os.killpg(os.getpgid(0), signal.SIGKILL)


def _ignore(_signum: int, _frame: object) -> None:
    """SIGTERM/SIGINT sent to the group reach the child too; the supervisor waits for it.
    (A handler, not SIG_IGN: an ignored signal would stay ignored in the child.)"""


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        sys.stderr.write("usage: supervise.py PARENT_PID -- COMMAND [ARG...]\n")
        return 2
    parent, command = int(argv[0]), argv[2:]
    if sys.platform.startswith("linux"):
        signal.signal(PARENT_DIED, lambda *_: _kill_everything())
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(PARENT_DIED))
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _ignore)
    if os.getppid() != parent:  # the parent died before the kernel could be told
        _kill_everything()
    try:
        # posix_spawn, not subprocess: importing subprocess costs more than the whole run
        # of a trivial command. SIGPIPE and SIGXFSZ (ignored by Python) back to default.
        child = os.posix_spawnp(
            command[0], command, os.environ, setsigdef=(signal.SIGPIPE, signal.SIGXFSZ)
        )
    except OSError as exc:
        sys.stderr.write(f"cannot run {command[0]}: {exc.strerror}\n")
        return 127 if isinstance(exc, FileNotFoundError) else 126
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    if code < 0:  # died of a signal: die of the same one, so the parent sees it
        if -code not in (signal.SIGKILL, signal.SIGSTOP):  # these have no handler to reset
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
