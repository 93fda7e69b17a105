"""`swarm up`'s supervisor: a child that dies is restarted, but an adapter that left rotation
(exit status 3: its attempts kept failing at start, see swarm_adapter.watchdog) is not, and
the rest of the stack runs on."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from swarm_adapter.watchdog import OUT_OF_ROTATION_EXIT
from swarm_cli.local.up import UpOptions, _Child, _Stack
from tests.waiting import eventually


def test_an_adapter_out_of_rotation_is_not_restarted_and_the_rest_runs_on(
    tmp_path: Path,
) -> None:
    stack = _Stack(UpOptions(data_dir=tmp_path))
    env = {"PATH": os.environ["PATH"]}
    retired = _Child(
        "adapter-claude-1", ["sh", "-c", f"exit {OUT_OF_ROTATION_EXIT}"], env, tmp_path / "a.log"
    )
    crashing = _Child("adapter-shell-1", ["sh", "-c", "exit 1"], env, tmp_path / "b.log")
    stack.children = [retired, crashing]
    for child in stack.children:
        child.start()
    supervisor = threading.Thread(target=stack.supervise)
    supervisor.start()
    try:
        eventually(lambda: retired.retired and crashing.restarts >= 2, timeout_s=20)
        assert retired.restarts == 0
        assert not stack.stop_requested.is_set()
    finally:
        stack.stop_requested.set()
        supervisor.join(timeout=10)
        for child in stack.children:
            child.stop(timeout=5)
