"""Git helpers on real repositories: mirrors, worktrees, commits, and concurrent worktree
creation on one repository without git lock errors."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import pytest

from swarm_common import git
from tests.conftest import branch_commit, init_repo


@pytest.fixture
def mirror(tmp_path: Path) -> tuple[Path, str]:
    source = init_repo(tmp_path / "src", {"README.md": "hi\n", "lib/a.py": "A = 1\n"})
    bare = tmp_path / "mirror.git"
    git.clone_bare(str(source), bare)
    return bare, git.resolve_commit(bare, "main")


def test_clone_bare_and_resolve(mirror: tuple[Path, str]) -> None:
    bare, base = mirror
    assert len(base) == 40
    assert git.resolve_commit(bare, "HEAD") == base
    with pytest.raises(git.GitError):
        git.resolve_commit(bare, "no-such-branch")


def test_clone_of_a_missing_repo_fails_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(git.GitError):
        git.clone_bare(str(tmp_path / "absent"), tmp_path / "m.git")
    assert not (tmp_path / "m.git").exists()
    assert not (tmp_path / "m.git.partial").exists()


def test_option_looking_refs_do_not_reach_git_as_options(mirror: tuple[Path, str]) -> None:
    bare, _ = mirror
    with pytest.raises(git.GitError):
        git.resolve_commit(bare, "--output=/tmp/pwned")
    assert not Path("/tmp/pwned").exists()


def test_worktree_commit_and_changed_files(mirror: tuple[Path, str], tmp_path: Path) -> None:
    bare, base = mirror
    wt = tmp_path / "wt"
    git.add_worktree(bare, wt, branch="swarm/s/task/a", commit=base)
    (wt / "new.txt").write_text("new\n")
    (wt / "README.md").unlink()
    author = git.Author("tester (swarm)", "shell@swarm.invalid")
    assert git.commit_all(wt, bare, message="work", author=author)
    head = git.git("rev-parse", "HEAD", cwd=wt).stdout.strip()
    assert branch_commit(bare, "swarm/s/task/a") == head
    assert sorted(git.changed_files(wt, base)) == ["README.md", "new.txt"]
    log = git.git("log", "-1", "--format=%an <%ae>", cwd=wt).stdout.strip()
    assert log == "tester (swarm) <shell@swarm.invalid>"
    assert not git.commit_all(wt, bare, message="nothing", author=author)
    git.remove_worktree(bare, wt)
    assert not wt.exists()
    assert branch_commit(bare, "swarm/s/task/a") == head


def test_setup_files_stay_out_of_the_commit_whether_or_not_git_ignores_them(
    tmp_path: Path,
) -> None:
    """The README's `setup.files: [".env"]` with `.env` in `.gitignore`, the usual case (an
    exclude pathspec made `git add` fail on it), and a setup file git does not ignore."""
    source = init_repo(tmp_path / "src", {".gitignore": ".env\n", "README.md": "hi\n"})
    bare = tmp_path / "m.git"
    git.clone_bare(str(source), bare)
    wt = tmp_path / "wt"
    git.add_worktree(bare, wt, branch="b", commit=git.resolve_commit(bare, "main"))
    for name in (".env", "config/local.json", "work.txt"):
        (wt / name).parent.mkdir(parents=True, exist_ok=True)
        (wt / name).write_text("x\n")
    author = git.Author("a", "a@a")
    assert git.commit_all(
        wt, bare, message="w", author=author, exclude=[".env", "config/local.json"]
    )
    tree = git.git("ls-tree", "-r", "--name-only", "HEAD", cwd=wt).stdout.split()
    assert sorted(tree) == [".gitignore", "README.md", "work.txt"]


def test_a_new_attempt_resets_the_branch_to_its_base(
    mirror: tuple[Path, str], tmp_path: Path
) -> None:
    bare, base = mirror
    author = git.Author("a", "a@a")
    wt = tmp_path / "wt1"
    git.add_worktree(bare, wt, branch="b", commit=base)
    (wt / "x").write_text("1")
    git.commit_all(wt, bare, message="one", author=author)
    # The first worktree is left behind (a crashed attempt); the next one still works.
    wt2 = tmp_path / "wt2"
    git.add_worktree(bare, wt2, branch="b", commit=base)
    assert git.git("rev-parse", "HEAD", cwd=wt2).stdout.strip() == base
    assert not (wt2 / "x").exists()


def test_ten_worktrees_at_once_on_one_repository(mirror: tuple[Path, str], tmp_path: Path) -> None:
    bare, base = mirror
    author = git.Author("a", "a@a")

    def attempt(i: int) -> str:
        wt = tmp_path / "wts" / f"t{i}"
        git.add_worktree(bare, wt, branch=f"swarm/s/task/t{i}", commit=base)
        (wt / f"f{i}.txt").write_text(str(i))
        git.commit_all(wt, bare, message=f"t{i}", author=author)
        head = git.git("rev-parse", "HEAD", cwd=wt).stdout.strip()
        git.remove_worktree(bare, wt)
        return head

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        heads = list(pool.map(attempt, range(10)))
    assert len(set(heads)) == 10
    for i, head in enumerate(heads):
        assert branch_commit(bare, f"swarm/s/task/t{i}") == head
    listed = git.git("worktree", "list", "--porcelain", git_dir=bare).stdout
    assert listed.count("worktree ") == 1  # only the bare repository itself


def _commit_on(bare: Path, parent: str, path: str, text: str) -> str:
    """A commit on `parent` that writes `path`, made with plumbing (no worktree)."""
    env = {"GIT_INDEX_FILE": str(bare / f"index-{path.replace('/', '_')}")}
    git.git("read-tree", parent, git_dir=bare, env=env)
    source = bare.parent / f"blob-{path.replace('/', '_')}"
    source.write_text(text)
    sha = git.git("hash-object", "-w", "--", str(source), git_dir=bare).stdout.strip()
    git.git("update-index", "--add", "--cacheinfo", f"100644,{sha},{path}", git_dir=bare, env=env)
    tree = git.git("write-tree", git_dir=bare, env=env).stdout.strip()
    author = git.identity(git.Author("t", "t@t"))
    return git.git(
        "commit-tree", tree, "-p", parent, "-m", path, git_dir=bare, env=author
    ).stdout.strip()


def test_merge_commits_move_the_branch_only_from_the_head_they_were_told(
    mirror: tuple[Path, str],
) -> None:
    bare, base = mirror
    branch, author = "integration", git.Author("a", "a@b")
    git.update_ref(bare, f"refs/heads/{branch}", base, old=git.ZERO, reason="t")
    one, two = _commit_on(bare, base, "one.txt", "1\n"), _commit_on(bare, base, "two.txt", "2\n")
    first = git.merge_commit(bare, base, one, message="m1", author=author)
    assert first is not None
    assert branch_commit(bare, branch) == base  # made, on no branch yet
    assert git.move_branch(bare, branch, first, old=base, reason="t")
    assert branch_commit(bare, branch) == first
    parents = git.git("rev-list", "--parents", "-n1", first, git_dir=bare).stdout.split()
    assert parents == [first, base, one]
    # Told a stale head (a merge whose record was lost moved the branch): nothing changes.
    stale = git.merge_commit(bare, base, two, message="m2", author=author)
    assert stale is not None
    assert not git.move_branch(bare, branch, stale, old=base, reason="t")
    assert branch_commit(bare, branch) == first
    # The careful way then merges onto git's own head, and finds a merged commit there.
    assert git.merge_into(bare, branch, one, message="again", author=author).already
    # A run: two merge commits, each onto the one before, and one move for both.
    three = _commit_on(bare, base, "three.txt", "3\n")
    second = git.merge_commit(bare, first, two, message="m2", author=author)
    assert second is not None
    third = git.merge_commit(bare, second, three, message="m3", author=author)
    assert third is not None
    assert git.move_branch(bare, branch, third, old=first, reason="t")
    for path, text in (("one.txt", "1\n"), ("two.txt", "2\n"), ("three.txt", "3\n")):
        assert git.git("show", f"{branch}:{path}", git_dir=bare).stdout == text


def test_merge_commits_leave_conflicts_and_missing_branches_to_merge_into(
    mirror: tuple[Path, str],
) -> None:
    bare, base = mirror
    author = git.Author("a", "a@b")
    left = _commit_on(bare, base, "README.md", "left\n")
    right = _commit_on(bare, base, "README.md", "right\n")
    git.update_ref(bare, "refs/heads/i", left, old=git.ZERO, reason="t")
    assert git.merge_commit(bare, left, right, message="m", author=author) is None
    assert branch_commit(bare, "i") == left
    assert git.merge_into(bare, "i", right, message="m", author=author).conflicts == ("README.md",)
    made = git.merge_commit(bare, base, left, message="m", author=author)
    assert made is not None
    assert not git.move_branch(bare, "absent", made, old=base, reason="t")
    assert branch_commit(bare, "absent") is None


def test_head_of_reads_what_rev_parse_says_or_nothing(
    mirror: tuple[Path, str], tmp_path: Path
) -> None:
    bare, base = mirror
    wt = tmp_path / "wt"
    git.add_worktree(bare, wt, branch="swarm/s/task/h", commit=base)

    def rev_parse() -> str:
        return git.git("rev-parse", "HEAD", cwd=wt).stdout.strip()

    assert git.head_of(wt) == rev_parse() == base
    (wt / "new.txt").write_text("n\n")
    git.git("add", "new.txt", cwd=wt)
    git.git("commit", "-qm", "n", cwd=wt, env=git.identity(git.Author("a", "a@b")))
    assert git.head_of(wt) == rev_parse() != base  # the branch moved: its loose ref
    git.git("checkout", "-q", "--detach", base, cwd=wt)
    assert git.head_of(wt) == rev_parse() == base  # detached: HEAD itself
    git.git("checkout", "-q", "swarm/s/task/h", cwd=wt)
    git.git("pack-refs", "--all", git_dir=bare)  # no loose ref left: git is asked instead
    assert git.head_of(wt) is None
    assert git.head_of(tmp_path / "not-a-worktree") is None
