"""Before and after the agent, on real Redis, real git and real processes: setup files and
command, conflict resolution (merge in, markers checked), quality gates on the committed
work, and `SWARM_FEEDBACK` for a retry."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from swarm_adapter.prompts import build_prompt
from swarm_adapter.runners import ShellRunner
from swarm_adapter.settings import AdapterSettings
from swarm_adapter.worker import Adapter
from swarm_common import git
from swarm_common.messages import TaskMessage
from swarm_common.streams import Keys
from swarm_orchestrator.integration import repos
from swarm_orchestrator.integration.repo_policy import Source
from tests.adapter.helpers import Mirror, events, message, send
from tests.conftest import branch_commit, init_repo
from tests.waiting import pid_alive, wait_until

IDENTITY = git.identity(git.Author("t", "t@t"))
FEEDBACK = "### Gate `test` failed (exit 1): `pytest -q`\n```\nE  assert 'a' == \"b\" $HOME\n```"


async def make_mirror(workspace: Path, source: Path, base_ref: str = "main") -> Mirror:
    session_id = uuid.uuid4()
    made = await repos.create_mirror(
        workspace=workspace,
        session_id=session_id,
        source=Source(clone=str(source), local=True),
        public=str(source),
        env={},
        base_ref=base_ref,
        integration_branch=f"swarm/{session_id}/integration",
        timeout_s=60,
    )
    return Mirror(session_id=session_id, path=workspace / made.path, base=made.base_commit)


@pytest.fixture
async def mirror(workspace: Path, git_repo: Path) -> Mirror:
    return await make_mirror(workspace, git_repo)


@dataclass
class Conflict:
    mirror: Mirror
    task: str
    """C: the task's work, `f.txt` = "task", `g.txt` = "task"."""
    integration: str
    """H: the integration head when the conflict was found: `f.txt` = "integration"."""
    later: str
    """H2, a child of H: the integration branch moved on, `g.txt` = "integration"."""


@pytest.fixture
async def conflict(workspace: Path, tmp_path: Path) -> Conflict:
    """A mirror where a task commit and an integration commit change the same line of the
    base commit's `f.txt`; a later integration commit also conflicts in `g.txt`."""
    source = init_repo(
        tmp_path / "conflicting", {"f.txt": "base\n", "g.txt": "base\n", "README.md": "# r\n"}
    )

    def commit(**files: str) -> str:
        for name, content in files.items():
            (source / name).write_text(content)
        git.git("add", "--all", cwd=source)
        git.git(
            "commit",
            "--quiet",
            "-m",
            "change",
            cwd=source,
            env=IDENTITY,
        )
        return git.git("rev-parse", "HEAD", cwd=source).stdout.strip()

    git.git("checkout", "--quiet", "-b", "task", cwd=source)
    task = commit(**{"f.txt": "task\n", "g.txt": "task\n"})
    git.git("checkout", "--quiet", "main", cwd=source)
    integration = commit(**{"f.txt": "integration\n", "other.txt": "from integration\n"})
    later = commit(**{"g.txt": "integration\n"})
    mirror = await make_mirror(workspace, source)
    assert mirror.base == later
    return Conflict(mirror=mirror, task=task, integration=integration, later=later)


def gates(mode: str = "strict", **commands: str) -> dict[str, Any]:
    """Session settings with these gate commands and no detection."""
    return {"gates": {"mode": mode, "detect": False, **commands}}


async def run_one(redis: Redis, keys: Keys, adapter: Adapter, msg: TaskMessage) -> Any:
    """Send `msg`, process it in burst mode, and return its outcome event."""
    await send(redis, keys, adapter, msg)
    assert await adapter.process_available() == 1
    outcome = (await events(redis, keys))[-1]
    assert outcome.TYPE in ("task.succeeded", "task.failed", "task.cancelled")
    return outcome


async def gate_progress(redis: Redis, keys: Keys) -> list[tuple[str, str]]:
    return [
        (e.data["gate"], e.data["status"])
        for e in await events(redis, keys)
        if e.TYPE == "task.progress" and e.kind == "gate"
    ]


def tree(mirror: Mirror, commit: str) -> list[str]:
    out = git.git("ls-tree", "-r", "--name-only", "-z", commit, git_dir=mirror.path).stdout
    return sorted(name for name in out.split("\0") if name)


def show(mirror: Mirror, commit: str, path: str) -> str:
    return git.git("show", f"{commit}:{path}", git_dir=mirror.path).stdout


def setup_files(workspace: Path, mirror: Mirror, files: dict[str, str]) -> None:
    root = repos.setup_dir(workspace, mirror.session_id)
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content)


# --- setup -------------------------------------------------------------------------------


async def test_setup_files_and_command_prepare_the_worktree_but_stay_out_of_the_commit(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror, workspace: Path
) -> None:
    setup_files(workspace, mirror, {".env": "TOKEN=s3cret\n", "conf/app.env": "MODE=dev\n"})
    settings = {
        "setup": {
            "files": [".env", "conf/app.env"],
            "command": "mkdir -p deps && cat .env conf/app.env > deps/lib.txt && echo prepared",
        }
    }
    agent = "cat .env conf/app.env deps/lib.txt > seen.txt"
    done = await run_one(redis, keys, adapter, message(mirror, agent, settings=settings))
    assert done.TYPE == "task.succeeded", getattr(done, "error", "")
    seen = "TOKEN=s3cret\nMODE=dev\n" * 2
    assert show(mirror, done.commit, "seen.txt") == seen
    assert tree(mirror, done.commit) == ["README.md", "seen.txt"]
    assert done.changed_files == ["seen.txt"]
    assert branch_commit(mirror.path, f"swarm/{mirror.session_id}/task/t1") == done.commit
    [setup] = done.gates
    assert (setup["name"], setup["status"], setup["exit_code"]) == ("setup", "passed", 0)
    assert "prepared" in setup["output_tail"]
    assert await gate_progress(redis, keys) == [("setup", "passed")]


async def test_the_readme_env_example_runs_when_gitignore_names_the_file(
    adapter: Adapter, redis: Redis, keys: Keys, workspace: Path, tmp_path: Path
) -> None:
    """`settings.setup.files: [".env"]` as the README shows it, in the usual repository
    whose `.gitignore` names `.env` (it failed every attempt with `git_error`)."""
    source = init_repo(tmp_path / "app", {".gitignore": ".env\n", "README.md": "app\n"})
    mirror = await make_mirror(workspace, source)
    setup_files(workspace, mirror, {".env": "TOKEN=s3cret\n"})
    settings = {"setup": {"files": [".env"]}}
    done = await run_one(
        redis, keys, adapter, message(mirror, "cat .env > seen.txt", settings=settings)
    )
    assert done.TYPE == "task.succeeded", getattr(done, "error", "")
    assert tree(mirror, done.commit) == [".gitignore", "README.md", "seen.txt"]
    assert show(mirror, done.commit, "seen.txt") == "TOKEN=s3cret\n"


async def test_a_failing_setup_command_fails_the_attempt_before_the_agent_runs(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror, workspace: Path, tmp_path: Path
) -> None:
    settings = {"setup": {"command": "echo no registry here; exit 4"}}
    msg = message(mirror, f"touch {tmp_path}/ran ran.txt", settings=settings)
    failed = await run_one(redis, keys, adapter, msg)
    assert (failed.TYPE, failed.reason) == ("task.failed", "setup_failed")
    assert not (tmp_path / "ran").exists()
    assert failed.commit is None
    assert branch_commit(mirror.path, msg.branch) in (None, mirror.base)
    [setup] = failed.gates
    assert (setup["name"], setup["status"], setup["exit_code"]) == ("setup", "failed", 4)
    assert "no registry here" in setup["output_tail"]
    assert (workspace / setup["log_path"]).read_text() == "no registry here\n"
    assert await gate_progress(redis, keys) == [("setup", "failed")]


async def test_an_adapter_without_the_opt_in_runs_no_setup_or_gate_command(
    adapter_settings: AdapterSettings, redis: Redis, keys: Keys, mirror: Mirror, tmp_path: Path
) -> None:
    """An agent adapter started without `SWARM_ALLOW_COMMANDS` (the finding: a Claude adapter
    ran a session's `setup.command`, which printed the adapter's key) runs no bash of the
    session's: the setup command fails the attempt unrun, a gate the session asked for fails
    unrun."""
    closed = Adapter(
        settings=adapter_settings.model_copy(
            update={"allow_shell_agent": False, "allow_commands": False}
        ),
        redis=redis,
        runner=ShellRunner(),
    )
    settings = {"setup": {"command": f"touch {tmp_path}/setup-ran"}}
    msg = message(mirror, f"touch {tmp_path}/agent-ran", settings=settings)
    failed = await run_one(redis, keys, closed, msg)
    assert (failed.TYPE, failed.reason) == ("task.failed", "setup_failed")
    assert "SWARM_ALLOW_COMMANDS" in failed.error
    assert not (tmp_path / "setup-ran").exists() and not (tmp_path / "agent-ran").exists()

    gates = {"gates": {"mode": "strict", "detect": False, "test": f"touch {tmp_path}/gate-ran"}}
    gated = await run_one(
        redis, keys, closed, message(mirror, "echo x > x.txt", key="t2", settings=gates)
    )
    assert (gated.TYPE, gated.reason) == ("task.failed", "gate_failed")
    [test] = gated.gates
    assert test["status"] == "failed" and "SWARM_ALLOW_COMMANDS" in test["reason"]
    assert not (tmp_path / "gate-ran").exists()


async def test_a_setup_command_past_its_timeout_fails_the_attempt(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror, tmp_path: Path
) -> None:
    settings = {"setup": {"command": "sleep 30", "timeout_s": 1}}
    started = time.monotonic()
    failed = await run_one(
        redis, keys, adapter, message(mirror, f"touch {tmp_path}/ran", settings=settings)
    )
    assert time.monotonic() - started < 15
    assert (failed.TYPE, failed.reason) == ("task.failed", "setup_failed")
    assert [g["status"] for g in failed.gates] == ["timeout"]
    assert not (tmp_path / "ran").exists()


async def test_a_setup_file_missing_from_the_workspace_fails_the_attempt(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror, workspace: Path, tmp_path: Path
) -> None:
    setup_files(workspace, mirror, {".env": "A=1\n"})
    settings = {"setup": {"files": [".env", "conf/missing.env"]}}
    failed = await run_one(
        redis, keys, adapter, message(mirror, f"touch {tmp_path}/ran", settings=settings)
    )
    assert (failed.TYPE, failed.reason) == ("task.failed", "setup_failed")
    assert "conf/missing.env" in failed.error
    assert not (tmp_path / "ran").exists()


async def test_a_setup_file_over_a_tracked_symlink_never_reaches_the_commit(
    adapter: Adapter, redis: Redis, keys: Keys, workspace: Path, tmp_path: Path
) -> None:
    source = init_repo(tmp_path / "linked", {".env.example": "TOKEN=changeme\n"})
    (source / ".env").symlink_to(".env.example")
    git.git("add", "--all", cwd=source)
    git.git("commit", "--quiet", "-m", "env link", cwd=source, env=IDENTITY)
    mirror = await make_mirror(workspace, source)
    setup_files(workspace, mirror, {".env": "TOKEN=s3cret\n"})
    settings = {"setup": {"files": [".env"]}}
    agent = "grep -qx TOKEN=s3cret .env && echo seen > seen.txt"
    done = await run_one(redis, keys, adapter, message(mirror, agent, settings=settings))
    assert done.TYPE == "task.succeeded", getattr(done, "error", "")
    assert show(mirror, done.commit, "seen.txt") == "seen\n"
    leaked = git.git("grep", "-l", "s3cret", done.commit, git_dir=mirror.path, check=False)
    assert leaked.stdout == ""
    assert done.changed_files == ["seen.txt"]


async def test_a_cancel_during_the_setup_command_cancels_the_attempt(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror, tmp_path: Path
) -> None:
    settings = {"setup": {"command": f"touch {tmp_path}/setup-started; sleep 30"}}
    msg = message(mirror, f"touch {tmp_path}/ran", settings=settings)
    await send(redis, keys, adapter, msg)
    running = asyncio.create_task(adapter.process_available())
    await wait_until(lambda: (tmp_path / "setup-started").exists())
    await redis.set(keys.cancel(msg.task_id, 1), "cancelled by test")
    assert await asyncio.wait_for(running, timeout=15) == 1
    outcome = (await events(redis, keys))[-1]
    assert not (tmp_path / "ran").exists()
    assert (outcome.TYPE, outcome.reason) == ("task.cancelled", "cancelled by test")


# --- gates -------------------------------------------------------------------------------


async def test_a_failing_strict_gate_fails_the_attempt_and_keeps_its_commit_and_log(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror, workspace: Path
) -> None:
    settings = gates(lint="echo lint clean", test="seq 1 5000; echo FAILED test_app; exit 1")
    msg = message(mirror, "echo work > work.txt", settings=settings)
    failed = await run_one(redis, keys, adapter, msg)
    assert (failed.TYPE, failed.reason) == ("task.failed", "gate_failed")
    assert "gate test failed" in failed.error
    assert failed.commit is not None and failed.commit != mirror.base
    assert branch_commit(mirror.path, msg.branch) == failed.commit
    assert show(mirror, failed.commit, "work.txt") == "work\n"
    assert failed.changed_files == ["work.txt"]
    lint, test = failed.gates
    assert (lint["name"], lint["status"], lint["exit_code"]) == ("lint", "passed", 0)
    assert (test["name"], test["status"], test["exit_code"]) == ("test", "failed", 1)
    assert test["output_tail"].endswith("FAILED test_app\n")
    assert not test["output_tail"].startswith("1\n2\n")  # a tail, not the whole output
    assert test["log_path"] == f"artifacts/{mirror.session_id}/t1/attempt-1/gate-test.log"
    whole = (workspace / test["log_path"]).read_text()
    assert whole == "".join(f"{n}\n" for n in range(1, 5001)) + "FAILED test_app\n"
    assert await gate_progress(redis, keys) == [("lint", "passed"), ("test", "failed")]


async def test_passing_strict_gates_let_the_attempt_succeed(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror
) -> None:
    settings = gates(lint="echo lint", test="echo test", build="echo build")
    done = await run_one(redis, keys, adapter, message(mirror, "true", settings=settings))
    assert done.TYPE == "task.succeeded", getattr(done, "error", "")
    assert [(g["name"], g["status"], g["output_tail"]) for g in done.gates] == [
        ("lint", "passed", "lint\n"),
        ("test", "passed", "test\n"),
        ("build", "passed", "build\n"),
    ]
    assert await gate_progress(redis, keys) == [
        ("lint", "passed"),
        ("test", "passed"),
        ("build", "passed"),
    ]


async def test_a_failing_gate_in_permissive_mode_is_recorded_not_fatal(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror
) -> None:
    settings = gates("permissive", lint="echo style error; exit 2", test="true")
    done = await run_one(redis, keys, adapter, message(mirror, "echo x > x.txt", settings=settings))
    assert done.TYPE == "task.succeeded"
    assert [(g["name"], g["status"], g["exit_code"]) for g in done.gates] == [
        ("lint", "failed", 2),
        ("test", "passed", 0),
    ]
    assert "style error" in done.gates[0]["output_tail"]
    assert tree(mirror, done.commit) == ["README.md", "x.txt"]


async def test_skip_mode_runs_no_gate(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror, tmp_path: Path
) -> None:
    ran = f"touch {tmp_path}/gate-ran; exit 1"
    settings = gates("skip", lint=ran, test=ran, build=ran)
    done = await run_one(redis, keys, adapter, message(mirror, "true", settings=settings))
    assert done.TYPE == "task.succeeded"
    assert done.gates == []
    assert not (tmp_path / "gate-ran").exists()
    assert await gate_progress(redis, keys) == []


@pytest.mark.parametrize(
    ("named", "expected"),
    [(["lint"], ["lint"]), (["build", "lint"], ["lint", "build"]), ([], [])],
)
async def test_a_task_runs_only_the_gates_it_names(
    adapter: Adapter,
    redis: Redis,
    keys: Keys,
    mirror: Mirror,
    tmp_path: Path,
    named: list[str],
    expected: list[str],
) -> None:
    settings = gates(**{name: f"touch {tmp_path}/{name}" for name in ("lint", "test", "build")})
    msg = message(mirror, "true", settings=settings, gates=named)
    done = await run_one(redis, keys, adapter, msg)
    assert done.TYPE == "task.succeeded"
    assert [g["name"] for g in done.gates] == expected
    assert sorted(p.name for p in tmp_path.iterdir() if p.name in ("lint", "test", "build")) == (
        sorted(expected)
    )


async def test_gates_judge_the_committed_work_and_what_they_make_is_not_committed(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror, tmp_path: Path
) -> None:
    gate = (
        'test -f app.txt && test -z "$(git status --porcelain)"'
        f" && git rev-parse HEAD > {tmp_path}/head"
        " && mkdir -p .cache && echo x > .cache/x && echo y > report.txt && echo z >> app.txt"
    )
    msg = message(mirror, "echo app > app.txt", settings=gates(test=gate))
    done = await run_one(redis, keys, adapter, msg)
    assert done.TYPE == "task.succeeded", done.gates
    assert (tmp_path / "head").read_text().strip() == done.commit
    assert branch_commit(mirror.path, msg.branch) == done.commit
    assert tree(mirror, done.commit) == ["README.md", "app.txt"]
    assert show(mirror, done.commit, "app.txt") == "app\n"
    assert done.changed_files == ["app.txt"]


# --- feedback ----------------------------------------------------------------------------


async def test_feedback_reaches_setup_agent_and_gates_as_swarm_feedback(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror, tmp_path: Path
) -> None:
    settings = {
        **gates(test=f"printf '%s' \"$SWARM_FEEDBACK\" > {tmp_path}/gate"),
        "setup": {"command": f"printf '%s' \"$SWARM_FEEDBACK\" > {tmp_path}/setup"},
    }
    agent = "printf '%s' \"${SWARM_FEEDBACK-unset}\" > fb.txt"
    retry = message(mirror, agent, attempt=2, feedback=FEEDBACK, settings=settings)
    done = await run_one(redis, keys, adapter, retry)
    assert done.TYPE == "task.succeeded", getattr(done, "error", "")
    assert show(mirror, done.commit, "fb.txt") == FEEDBACK
    assert (tmp_path / "setup").read_text() == FEEDBACK
    assert (tmp_path / "gate").read_text() == FEEDBACK
    first = await run_one(redis, keys, adapter, message(mirror, agent, key="t2"))
    assert show(mirror, first.commit, "fb.txt") == "unset"


def test_the_prompt_of_a_retry_says_what_went_wrong() -> None:
    fields: dict[str, Any] = {
        "session_id": uuid.uuid4(),
        "task_id": uuid.uuid4(),
        "task_key": "api",
        "attempt": 2,
        "agent": "claude",
        "title": "Add the route",
        "prompt": "Add GET /health.",
        "repo": "repos/x.git",
        "base_commit": "a" * 40,
        "branch": "swarm/x/task/api",
        "timeout_s": 60,
    }
    retry = build_prompt(TaskMessage(**fields, feedback=FEEDBACK))
    assert "## What went wrong in the previous attempt" in retry
    assert FEEDBACK in retry
    assert (
        retry.index("Add GET /health.")
        < retry.index("What went wrong")
        < retry.index("How to work")
    )
    assert "What went wrong" not in build_prompt(TaskMessage(**fields))


# --- conflict resolution -----------------------------------------------------------------


def resolution(conflict: Conflict, prompt: str, **extra: Any) -> TaskMessage:
    return message(
        conflict.mirror,
        prompt,
        key="t1-resolve",
        base_commit=conflict.task,
        merge_with=conflict.integration,
        conflict_files=["f.txt"],
        **extra,
    )


async def test_a_resolution_task_merges_the_integration_head_and_commits_a_merge(
    adapter: Adapter, redis: Redis, keys: Keys, conflict: Conflict, tmp_path: Path
) -> None:
    prompt = f"cp f.txt {tmp_path}/seen && printf 'both\\n' > f.txt"
    done = await run_one(redis, keys, adapter, resolution(conflict, prompt))
    assert done.TYPE == "task.succeeded", getattr(done, "error", "")
    seen = (tmp_path / "seen").read_text()
    assert seen.startswith("<<<<<<< ") and "task\n=======\nintegration\n>>>>>>> " in seen
    mirror = conflict.mirror
    parents = git.git("rev-list", "--parents", "-n", "1", done.commit, git_dir=mirror.path)
    assert parents.stdout.split()[1:] == [conflict.task, conflict.integration]
    assert show(mirror, done.commit, "f.txt") == "both\n"
    assert show(mirror, done.commit, "other.txt") == "from integration\n"
    assert show(mirror, done.commit, "g.txt") == "task\n"
    assert sorted(done.changed_files) == ["f.txt", "other.txt"]
    setup = [e for e in await events(redis, keys) if e.TYPE == "task.progress"]
    assert [e.data for e in setup if e.kind == "setup"] == [{"conflicts": ["f.txt"]}]


async def test_a_resolution_task_that_leaves_conflict_markers_fails(
    adapter: Adapter, redis: Redis, keys: Keys, conflict: Conflict
) -> None:
    failed = await run_one(redis, keys, adapter, resolution(conflict, "true"))
    assert (failed.TYPE, failed.reason) == ("task.failed", "unresolved_conflict")
    assert "f.txt" in failed.error


async def test_a_resolution_task_with_gates_and_setup_runs_them_on_the_merge(
    adapter: Adapter, redis: Redis, keys: Keys, conflict: Conflict
) -> None:
    settings = {
        **gates(test="grep -qx both f.txt && test -f other.txt"),
        "setup": {"command": "mkdir -p node_modules && touch node_modules/x"},
    }
    done = await run_one(
        redis, keys, adapter, resolution(conflict, "echo both > f.txt", settings=settings)
    )
    assert done.TYPE == "task.succeeded", done.gates
    assert [(g["name"], g["status"]) for g in done.gates] == [
        ("setup", "passed"),
        ("test", "passed"),
    ]
    assert tree(conflict.mirror, done.commit) == ["README.md", "f.txt", "g.txt", "other.txt"]


async def test_markers_left_in_a_file_that_conflicts_only_with_the_newer_head_fail(
    adapter: Adapter, redis: Redis, keys: Keys, conflict: Conflict
) -> None:
    msg = resolution(conflict, "echo both > f.txt").model_copy(
        update={"merge_with": conflict.later}
    )
    done = await run_one(redis, keys, adapter, msg)
    conflicts = [
        e.data["conflicts"]
        for e in await events(redis, keys)
        if e.TYPE == "task.progress" and e.kind == "setup"
    ]
    assert conflicts == [["f.txt", "g.txt"]]  # the adapter knows g.txt conflicted
    assert (done.TYPE, getattr(done, "reason", "")) == ("task.failed", "unresolved_conflict")


async def test_a_resolution_task_merges_where_git_has_no_identity_configured(
    adapter: Adapter,
    redis: Redis,
    keys: Keys,
    conflict: Conflict,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = tmp_path / "bare-home"
    home.mkdir()
    (home / ".gitconfig").write_text("[user]\n\tuseConfigOnly = true\n")
    monkeypatch.setenv("HOME", str(home))
    for name in ("XDG_CONFIG_HOME", "EMAIL"):
        monkeypatch.delenv(name, raising=False)
    done = await run_one(redis, keys, adapter, resolution(conflict, "echo both > f.txt"))
    assert done.TYPE == "task.succeeded", getattr(done, "error", "")


# --- cancel ------------------------------------------------------------------------------


async def test_a_cancel_during_a_long_gate_stops_it_and_cancels_the_attempt(
    adapter: Adapter, redis: Redis, keys: Keys, mirror: Mirror, tmp_path: Path
) -> None:
    pid_file = tmp_path / "gate-pid"
    gate = f"echo $$ > {pid_file}.tmp && mv {pid_file}.tmp {pid_file} && exec sleep 30"
    msg = message(mirror, "echo x > x.txt", settings=gates(test=gate, build="echo never"))
    await send(redis, keys, adapter, msg)
    started = time.monotonic()
    running = asyncio.create_task(adapter.process_available())
    await wait_until(pid_file.exists)
    await redis.set(keys.cancel(msg.task_id, 1), "cancelled by test")
    assert await asyncio.wait_for(running, timeout=15) == 1
    assert time.monotonic() - started < 15
    cancelled = (await events(redis, keys))[-1]
    assert (cancelled.TYPE, cancelled.reason) == ("task.cancelled", "cancelled by test")
    assert [(g["name"], g["status"]) for g in cancelled.gates] == [
        ("test", "cancelled"),
        ("build", "cancelled"),
    ]
    assert cancelled.commit == branch_commit(mirror.path, msg.branch) != mirror.base
    gate_pid = int(pid_file.read_text())
    await wait_until(lambda: not pid_alive(gate_pid), timeout_s=5)
