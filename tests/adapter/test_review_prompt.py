"""A review run's prompt (`swarm_adapter.review`): the task the builder was given, the
rubric, and the diff from the merge base of the builder's commit and the integration head,
read from a real repository, cut when it is long."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any

from swarm_adapter import review
from swarm_adapter.prompts import build_prompt
from swarm_common.messages import TaskMessage
from tests.conftest import init_repo


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (repo / name).write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message)
    return _git(repo, "rev-parse", "HEAD")


def _message(review_of: dict[str, Any], **fields: Any) -> TaskMessage:
    return TaskMessage.model_validate(
        {
            "session_id": uuid.uuid4(),
            "task_id": uuid.uuid4(),
            "task_key": "_review-api-1",
            "attempt": 1,
            "agent": "codex",
            "title": "Review api",
            "prompt": "Review the work of task api",
            "repo": "repos/x.git",
            "base_commit": review_of["commit"],
            "branch": "swarm/x/task/_review-api-1",
            "timeout_s": 60,
            "read_only": True,
            "review": review_of,
            **fields,
        }
    )


def _history(tmp_path: Path) -> tuple[Path, str, str, str]:
    """A repository where the builder's commit and the integration head both moved on from
    their merge base: (repo, base, builder's commit, integration head)."""
    repo = init_repo(tmp_path / "repo", {"app.py": "x = 1\n"})
    base = _git(repo, "rev-parse", "HEAD")
    _git(repo, "checkout", "-qb", "builder")
    work = _commit(repo, {"app.py": "x = 2\n", "new.py": "y = 3\n"}, "builder")
    _git(repo, "checkout", "-q", "main")
    head = _commit(repo, {"other.py": "z = 4\n"}, "someone else")
    return repo, base, work, head


async def test_the_prompt_holds_the_task_the_rubric_and_only_the_builders_diff(
    tmp_path: Path,
) -> None:
    repo, _, work, head = _history(tmp_path)
    message = _message(
        {
            "task_key": "api",
            "title": "Set x",
            "prompt": "Set x to 2 and add new.py.",
            "acceptance": ["x is 2"],
            "commit": work,
            "against": head,
            "round": 2,
            "max_rounds": 3,
            "rubric": "No globals.",
            "builder_agent": "claude",
        },
        persona={"name": "grace-hopper", "author_name": "Grace Hopper", "style": "Terse."},
    )
    shown = await review.with_diff(message, repo)
    prompt = build_prompt(shown)
    assert prompt.startswith("# Review: Set x")
    assert "You are Grace Hopper, a reviewer" in prompt
    assert "Another agent (claude)" in prompt and "round 2 of 3" in prompt
    assert "Set x to 2 and add new.py." in prompt and "- x is 2" in prompt
    assert "## The task it was given" in prompt
    assert "No globals." in prompt and "Terse." in prompt
    assert "+x = 2" in prompt and "+y = 3" in prompt and "new.py" in prompt
    assert "other.py" not in prompt  # the integration head's own change is not the builder's
    assert '"verdict": "PASS" or "FAIL"' in prompt
    assert "## What to do" not in prompt  # not a builder's prompt


async def test_a_long_diff_is_cut_and_says_so(tmp_path: Path) -> None:
    repo, _, _, head = _history(tmp_path)
    _git(repo, "checkout", "-q", "builder")
    big = _commit(repo, {"big.txt": "line\n" * 50_000}, "big")
    message = _message({"task_key": "api", "commit": big, "against": head})
    shown = await review.with_diff(message, repo)
    assert shown.review is not None and shown.review["diff_cut"] is True
    assert len(shown.review["diff"].encode()) <= review.MAX_DIFF_BYTES
    assert "big.txt" in shown.review["stat"]
    assert "The patch is cut" in build_prompt(shown)


async def test_a_commit_the_worktree_cannot_read_still_gives_a_prompt(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo")
    message = _message({"task_key": "api", "commit": "f" * 40, "against": "e" * 40})
    shown = await review.with_diff(message, repo)
    assert shown.review is not None and shown.review["diff_error"]
    assert "The diff could not be read here" in build_prompt(shown)


def test_a_work_run_gets_no_review_prompt() -> None:
    plain = TaskMessage.model_validate(
        {
            "session_id": uuid.uuid4(),
            "task_id": uuid.uuid4(),
            "task_key": "api",
            "attempt": 1,
            "agent": "claude",
            "title": "Set x",
            "prompt": "Set x.",
            "repo": "repos/x.git",
            "base_commit": "a" * 40,
            "branch": "swarm/x/task/api",
            "timeout_s": 60,
        }
    )
    assert "## What to do\nSet x." in build_prompt(plain)
