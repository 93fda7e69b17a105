"""Secrets out of a long-running process's environment.

A process's environment as it started stays readable in `/proc/<pid>/environ` by every
process of the same user for as long as it runs, whatever it later unsets. So `swarm up`,
`swarm server` and `swarm adapter` call `conceal()` first: when their environment holds a
secret (a variable `redaction.secret_variables` names: `SWARM_API_TOKEN`, a password in
`SWARM_DATABASE_URL` or `SWARM_REDIS_URL`, an agent's API key), the process writes those
variables into a pipe and executes itself again without them, telling the new image the
pipe's descriptor; the new image reads them back into `os.environ` (its settings read them
there) and closes the pipe. What another process can read of it afterwards holds no
secret. Children get explicit environments (`without_secrets`, or an allowlist), never
this process's whole one.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import sys
from collections.abc import Mapping

from swarm_common.redaction import secret_variables

__all__ = ["FD_VARIABLE", "conceal", "without_secrets"]

FD_VARIABLE = "SWARM_CONCEALED_FD"
_PIPE_BYTES = 60_000  # below a pipe's buffer, so writing never waits for the reader
_PR_SET_DUMPABLE = 4


def conceal() -> None:
    """Re-execute this process with its secrets moved out of its environment (or, in the
    re-executed image, take them back). Either way the process is then not dumpable: no
    process of the same user without the right to trace it (root has it) can read its
    memory, environment or open files through `/proc`."""
    _not_dumpable()
    if FD_VARIABLE in os.environ:
        _take_back(int(os.environ.pop(FD_VARIABLE)))
        return
    names = secret_variables(os.environ)
    payload = json.dumps({name: os.environ[name] for name in names}).encode()
    if not names:
        return
    if len(payload) > _PIPE_BYTES:
        sys.stderr.write("swarm: secrets too large to move out of the environment\n")
        return
    read_fd, write_fd = os.pipe()
    os.write(write_fd, payload)
    os.close(write_fd)
    os.set_inheritable(read_fd, True)
    env = {**without_secrets(os.environ), FD_VARIABLE: str(read_fd)}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def _not_dumpable() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def _take_back(fd: int) -> None:
    with os.fdopen(fd, "rb") as pipe:
        os.environ.update(json.loads(pipe.read()))


def without_secrets(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` less every variable that holds a secret."""
    hidden = set(secret_variables(environ))
    return {k: v for k, v in environ.items() if k not in hidden}
