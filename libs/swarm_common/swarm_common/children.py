"""Tying a child process's life to ours: on Linux, a parent-death signal, so a process we
start does not outlive us when we are killed outright (`kill -9`, OOM)."""

from __future__ import annotations

import ctypes
import signal
import sys
from collections.abc import Callable

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: signal.Signals = signal.SIGKILL) -> Callable[[], None] | None:
    """A `preexec_fn` making the child receive `sig` when its parent dies; None off Linux.

    It runs in the child after fork (and after any change of user), so it survives the
    switch to another user that would otherwise clear it."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def _set() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, int(sig))

    return _set
