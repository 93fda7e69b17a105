"""Agent processes: own process group, output tail, timeout and cancel kill the whole group."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from swarm_common import procs
from swarm_common.procs import kill_strays, run_process, watched
from swarm_common.supervise import MARK
from tests.waiting import pid_alive, pid_in, wait_until


async def _run(
    script: str,
    tmp_path: Path,
    *,
    timeout_s: float = 10,
    cancel: asyncio.Event | None = None,
    **kwargs: object,
):  # type: ignore[no-untyped-def]
    return await run_process(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=dict(os.environ),
        timeout_s=timeout_s,
        cancel=cancel or asyncio.Event(),
        kill_grace_s=0.5,
        **kwargs,
    )  # type: ignore[arg-type]


async def test_exit_code_and_output_tail(tmp_path: Path) -> None:
    result = await _run(
        "for i in $(seq 1 2000); do echo line-$i; done; exit 4", tmp_path, tail_bytes=100
    )
    assert result.exit_code == 4 and not result.timed_out and not result.cancelled
    assert result.tail.endswith("line-2000\n") and len(result.tail) <= 100


async def test_lines_are_handed_over_as_they_come(tmp_path: Path) -> None:
    lines: list[bytes] = []

    async def on_line(line: bytes) -> None:
        lines.append(line)

    await _run("echo one; echo two 1>&2; printf three", tmp_path, on_line=on_line)
    assert lines == [b"one\n", b"two\n", b"three"]


async def test_a_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    script = f"sleep 60 & echo $! > {tmp_path}/bg; trap '' TERM; sleep 60"
    result = await _run(script, tmp_path, timeout_s=1)
    assert result.timed_out and result.exit_code is None
    background = int((tmp_path / "bg").read_text())
    await wait_until(lambda: not pid_alive(background), timeout_s=5)


async def test_a_cancel_kills_the_whole_group(tmp_path: Path) -> None:
    cancel = asyncio.Event()
    script = f"sleep 60 & echo $! > {tmp_path}/bg; echo $$ > {tmp_path}/main; wait"
    running = asyncio.create_task(_run(script, tmp_path, cancel=cancel))
    pids = [await pid_in(tmp_path / n) for n in ("bg", "main")]
    cancel.set()
    result = await running
    assert result.cancelled and result.exit_code is None
    for pid in pids:
        await wait_until(lambda pid=pid: not pid_alive(pid), timeout_s=5)


async def test_children_left_behind_by_a_finished_command_are_killed(tmp_path: Path) -> None:
    result = await _run(f"sleep 60 > /dev/null 2>&1 & echo $! > {tmp_path}/bg; exit 0", tmp_path)
    assert result.exit_code == 0
    background = int((tmp_path / "bg").read_text())
    await wait_until(lambda: not pid_alive(background), timeout_s=5)


async def test_strays_outside_the_group_are_found_by_their_marker_and_killed(
    tmp_path: Path,
) -> None:
    marked = {**os.environ, "SWARM_WORKTREE": str(tmp_path / "t1-1")}
    other = {**os.environ, "SWARM_WORKTREE": str(tmp_path / "t1-10")}
    # Detached processes in sessions of their own, one of another attempt, and a person's
    # shell sitting in the worktree (no marker).
    stray = subprocess.Popen(["sleep", "60"], env=marked, start_new_session=True)
    bystander = subprocess.Popen(["sleep", "61"], env=other, start_new_session=True)
    person = subprocess.Popen(["sleep", "62"], cwd=tmp_path, start_new_session=True)
    try:
        killed = kill_strays(f"SWARM_WORKTREE={tmp_path / 't1-1'}")
        assert killed == [stray.pid]
        assert stray.wait(timeout=5) == -9
        assert bystander.poll() is None and person.poll() is None
    finally:
        for proc in (stray, bystander, person):
            if proc.poll() is None:
                proc.kill()
            proc.wait()


async def test_overlong_lines_are_cut_and_the_next_lines_stay_whole(tmp_path: Path) -> None:
    lines: list[bytes] = []

    async def on_line(line: bytes) -> None:
        lines.append(line)

    script = (
        "python3 -c \"import sys; sys.stdout.write('x' * (17 * 1024 * 1024) + '\\n')\"; "
        "echo first; echo second; printf last"
    )
    result = await _run(script, tmp_path, on_line=on_line)
    assert result.exit_code == 0
    assert len(lines) == 4
    assert len(lines[0]) == 16 * 1024 * 1024 + 1 and set(lines[0][:-1]) == {ord("x")}
    assert lines[1:] == [b"first\n", b"second\n", b"last"]


def carrying(marker: str) -> dict[int, str]:
    """Live processes whose environment holds `marker`, with their command lines."""
    needle = marker.encode() + b"\0"
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if (environ.startswith(needle) or b"\0" + needle in environ) and pid_alive(int(entry.name)):
            found[int(entry.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    return found


_PARENT = """
import asyncio, os, sys
from pathlib import Path
from swarm_common.procs import run_process

async def main() -> None:
    env = {**os.environ, "SWARM_WORKTREE": sys.argv[1]}
    await run_process(
        ["sh", "-c", "sleep 300 & setsid sleep 301 & env -i sleep 303 & echo $! > pid; sleep 302"],
        cwd=Path(sys.argv[2]), env=env, timeout_s=600, cancel=asyncio.Event(),
    )

asyncio.run(main())
"""


async def test_a_parent_killed_with_sigkill_takes_every_marked_process_with_it(
    tmp_path: Path,
) -> None:
    marker = f"SWARM_WORKTREE={tmp_path / 'worktree'}"
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT, str(tmp_path / "worktree"), str(tmp_path)]
    )
    sleeps = {"sleep 300", "sleep 301", "sleep 302"}
    try:
        await wait_until(lambda: sleeps <= set(carrying(marker).values()), timeout_s=10)
        unmarked = int((tmp_path / "pid").read_text())  # `env -i`: in the group, no marker
        assert pid_alive(unmarked)
        os.kill(parent.pid, signal.SIGKILL)
        assert parent.wait(timeout=5) == -signal.SIGKILL
        await wait_until(lambda: not carrying(marker), timeout_s=5, message=str(carrying(marker)))
        await wait_until(lambda: not pid_alive(unmarked), timeout_s=5, message="env -i sleep")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        kill_strays(marker)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["sh", "-c", "exit 3"], 3),
        (["sh", "-c", "kill -TERM $$"], -signal.SIGTERM),
        (["sh", "-c", "kill -9 $$"], -signal.SIGKILL),
        (["sh", "-c", "kill -INT $$"], -signal.SIGINT),
        (["no-such-command-for-swarm"], 127),
    ],
    ids=["exit-3", "sigterm", "sigkill", "sigint", "missing"],
)
async def test_the_supervisor_passes_the_exit_status_through(
    tmp_path: Path, argv: list[str], expected: int
) -> None:
    result = await run_process(
        argv, cwd=tmp_path, env=dict(os.environ), timeout_s=10, cancel=asyncio.Event()
    )
    assert result.exit_code == expected
    assert not result.timed_out and not result.cancelled
    if expected == 127:
        assert "cannot run no-such-command-for-swarm" in result.tail


@pytest.mark.parametrize("detach", ["", "setsid "], ids=["same-group", "own-session"])
async def test_a_command_that_exits_is_done_though_a_child_still_holds_its_output(
    tmp_path: Path, detach: str
) -> None:
    marker = f"SWARM_WORKTREE={tmp_path}"
    try:
        result = await run_process(
            ["sh", "-c", f"{detach}sleep 3 & exit 0"],
            cwd=tmp_path,
            env={**os.environ, "SWARM_WORKTREE": str(tmp_path)},
            timeout_s=1,
            cancel=asyncio.Event(),
            kill_grace_s=0.2,
        )
        assert (result.exit_code, result.timed_out) == (0, False)
        assert result.duration_s < 1
    finally:
        kill_strays(marker)


async def test_a_watchdog_that_died_is_started_again_for_the_next_command(tmp_path: Path) -> None:
    first = watched({})[MARK]
    watchdog = procs._WATCHDOG.pid
    os.kill(watchdog, signal.SIGKILL)
    await wait_until(lambda: not pid_alive(watchdog), timeout_s=5, message="watchdog gone")
    result = await _run("echo $SWARM_OWNER", tmp_path)
    again = procs._WATCHDOG.pid
    assert again != watchdog and pid_alive(again)
    assert result.tail.strip() != first and result.tail.strip() == watched({})[MARK]
