"""Files a Swarm process writes are its own user's only: mirrors, worktrees, artifacts and
logs can hold command output, setup files hold secrets.

`keep_private()` is called first thing by every long-running Swarm process (`swarm up`,
`swarm server`, `swarm adapter`): files and folders it and its children create are 0600 and
0700. `private_dir` makes (or tightens) a folder made before, such as the workspace.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

__all__ = ["keep_private", "private_dir"]

log = logging.getLogger(__name__)

UMASK = 0o077


def keep_private() -> None:
    os.umask(UMASK)


def private_dir(path: Path) -> Path:
    """`path` as a folder only its owner can enter; a folder owned by someone else (a volume's
    root, say) is left as it is, with a warning."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        path.chmod(0o700)
    except PermissionError:
        log.warning("cannot make a folder private", extra={"path": str(path)})
    return path
