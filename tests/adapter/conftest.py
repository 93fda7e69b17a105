"""Fixtures of the adapter tests: a session's bare mirror in the test's workspace."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from swarm_common import git
from tests.adapter.helpers import Mirror


@pytest.fixture
def mirror(workspace: Path, git_repo: Path) -> Mirror:
    session_id = uuid.uuid4()
    path = workspace / "repos" / f"{session_id}.git"
    git.clone_bare(str(git_repo), path)
    return Mirror(session_id=session_id, path=path, base=git.resolve_commit(path, "main"))
