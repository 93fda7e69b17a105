"""Where a session's repository may come from (`integration/repo_policy.py`), tried as one
tenant that wants another tenant's code: its mirror in the workspace by path, by `file://`
URL, by symlink and by `..`; the other tenant's own repository; a repository whose `.git`
or alternates lead into the workspace; setup files and push targets the same way; and
checkpoint gates that try to read the data folder's passwords, the admin token, another
session's mirror and the orchestrator's environment."""

from __future__ import annotations

import os
import secrets
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from swarm_common import confine, git
from swarm_orchestrator.api.deps import AppState
from swarm_orchestrator.db.models import Session
from swarm_orchestrator.errors import SwarmError
from swarm_orchestrator.integration.repo_policy import RepoPolicy
from swarm_orchestrator.settings import OrchestratorSettings
from tests.conftest import init_repo
from tests.orchestrator.helpers import count_rows, new_session, tenant_client


def _server_defaults(settings: OrchestratorSettings, tmp_path: Path) -> None:
    """As a server is configured: each tenant its own folder, no shared roots for tenants."""
    settings.tenants_use_local_roots = False
    settings.tenant_repo_roots = {"acme": [tmp_path / "acme"], "globex": [tmp_path / "globex"]}


@pytest.fixture
async def two_tenants(
    api: httpx.AsyncClient, settings: OrchestratorSettings, tmp_path: Path, workspace: Path
) -> dict[str, Any]:
    """Tenant acme's session (with a private file) and a client of tenant globex."""
    _server_defaults(settings, tmp_path)
    acme_repo = init_repo(tmp_path / "acme" / "app", {"secret.txt": "acme-private\n"})
    acme = await tenant_client(api, "acme")
    globex = await tenant_client(api, "globex")
    session = await new_session(acme, acme_repo)
    (tmp_path / "globex").mkdir()
    return {
        "acme": acme,
        "globex": globex,
        "acme_repo": acme_repo,
        "mirror": workspace / "repos" / f"{session['id']}.git",
    }


async def _refused(client: httpx.AsyncClient, repo: str, code: str = "repo_not_allowed") -> None:
    response = await client.post("/v1/sessions", json={"title": "probe", "repo": repo})
    assert (response.status_code, response.json()["code"]) == (
        403 if code == "repo_not_allowed" else 422,
        code,
    ), response.text


async def test_a_tenant_cannot_name_another_tenants_code(
    two_tenants: dict[str, Any],
    settings: OrchestratorSettings,
    sessionmaker: Any,
    tmp_path: Path,
    workspace: Path,
) -> None:
    globex, mirror, acme_repo = (
        two_tenants["globex"],
        two_tenants["mirror"],
        two_tenants["acme_repo"],
    )
    settings.repo_schemes = ["https", "ssh", "file"]
    before = await count_rows(sessionmaker, Session)
    mirrors = sorted((workspace / "repos").iterdir())
    own = tmp_path / "globex"
    (own / "link").symlink_to(mirror)
    (own / "up").mkdir()
    for repo in (
        str(mirror),  # acme's mirror by path
        f"file://{mirror}",  # ... as a URL
        f"file://localhost{mirror}",
        str(acme_repo),  # acme's own repository
        f"file://{acme_repo}",
        str(own / "link"),  # a symlink in globex's own folder
        f"{own}/up/../../acme/app",  # `..` out of it
        f"{own}/up/../../workspace/repos/{mirror.name}",
    ):
        await _refused(globex, repo)
    assert await count_rows(sessionmaker, Session) == before
    assert sorted((workspace / "repos").iterdir()) == mirrors


async def test_a_repository_whose_git_folder_leads_elsewhere_is_refused(
    two_tenants: dict[str, Any], tmp_path: Path
) -> None:
    globex, mirror = two_tenants["globex"], two_tenants["mirror"]
    own = tmp_path / "globex"
    pointer = own / "pointer"  # a `.git` file naming acme's mirror
    pointer.mkdir()
    (pointer / ".git").write_text(f"gitdir: {mirror}\n")
    borrower = init_repo(own / "borrower")  # borrows acme's objects
    (borrower / ".git" / "objects" / "info" / "alternates").write_text(f"{mirror}/objects\n")
    linked = init_repo(own / "linked")  # its object store is acme's
    pack = linked / ".git" / "objects" / "pack"
    pack.rmdir()
    pack.symlink_to(mirror / "objects" / "pack")
    chained = init_repo(own / "chained")  # borrows from a store that borrows acme's
    middle = own / "middle.git"
    git.git("init", "--quiet", "--bare", str(middle))
    (middle / "objects" / "info" / "alternates").write_text(f"{mirror}/objects\n")
    (chained / ".git" / "objects" / "info" / "alternates").write_text(f"{middle}/objects\n")
    for repo in (pointer, borrower, linked, chained):
        await _refused(globex, str(repo))
    # git's own guesses are not taken: `<path>.git` beside a folder that is no repository,
    # and a `gitdir:` file given as the path.
    (own / "proj").mkdir()
    (own / "proj.git").symlink_to(mirror)
    (own / "evil").write_text(f"gitdir: {mirror}\n")
    await _refused(globex, str(own / "proj"), "invalid_repo")
    await _refused(globex, str(own / "evil"), "invalid_repo")


async def test_an_allowed_root_still_works_and_a_server_without_roots_takes_urls_only(
    api: httpx.AsyncClient,
    two_tenants: dict[str, Any],
    settings: OrchestratorSettings,
    tmp_path: Path,
) -> None:
    globex = two_tenants["globex"]
    mine = init_repo(tmp_path / "globex" / "mine")
    assert (await new_session(globex, mine))["repo"] == str(mine)
    settings.tenant_repo_roots = {}
    await _refused(globex, str(mine))
    # A token without a tenant (`api`) has the system-wide roots: none on a plain server.
    assert (await new_session(api, mine))["repo"] == str(mine)
    settings.local_repo_roots = []
    await _refused(api, str(mine))


async def test_remote_urls_follow_the_scheme_and_host_policy(
    api: httpx.AsyncClient, settings: OrchestratorSettings
) -> None:
    for repo in ("http://example.com/x.git", "git://example.com/x.git", "file:///etc"):
        await _refused(api, repo)
    await _refused(api, "ext::sh -c id", "invalid_repo")
    await _refused(api, "ext::sh", "invalid_repo")
    await _refused(api, "foo://example.com/x", "invalid_repo")
    await _refused(api, "relative/path", "invalid_repo")
    settings.repo_hosts = ["github.com", "*.example.org"]
    await _refused(api, "https://evil.example.com/x.git")
    await _refused(api, "git@evil.example.com:x.git")
    policy = RepoPolicy.from_settings(settings)
    assert policy.check("https://github.com/a/b.git", tenant=None).clone.endswith("b.git")
    assert not policy.check("git@code.example.org:a/b.git", tenant=None).local
    with pytest.raises(SwarmError) as refused:
        policy.check("ssh://GitHub.com.evil.net/a", tenant=None)
    assert refused.value.code == "repo_not_allowed"


def test_git_reaches_out_with_a_clean_home_and_no_redirects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clone reads no user or system config: an `insteadOf` rewrite in the user's
    `.gitconfig` (one that would send an allowed URL to a local folder) is not seen, HTTP
    redirects are not followed and no ssh agent answers."""
    user = tmp_path / "user"
    user.mkdir()
    (user / ".gitconfig").write_text('[url "/srv/other"]\n\tinsteadOf = https://allowed.example/\n')
    monkeypatch.setenv("HOME", str(user))

    def config(env: dict[str, str] | None) -> str:
        return git.git("config", "--list", cwd=tmp_path, env=env, check=False).stdout

    assert "insteadof=https://allowed.example/" in config(None)  # what git would do
    env = git.outbound_env(tmp_path / "swarm-home")
    assert "insteadof" not in config(env)
    assert "http.followredirects=false" in config(env)
    assert env["SSH_AUTH_SOCK"] == "" and "IdentityFile=" in env["GIT_SSH_COMMAND"]


async def test_setup_files_cannot_lead_out_of_the_repository(
    two_tenants: dict[str, Any], tmp_path: Path, workspace: Path
) -> None:
    globex = two_tenants["globex"]
    mine = init_repo(tmp_path / "globex" / "setup-probe")
    (mine / "env-link").symlink_to(two_tenants["acme_repo"] / "secret.txt")
    (mine / "ws-link").symlink_to(workspace / "repos")
    for name in ("env-link", "ws-link/x", "../acme/app/secret.txt"):
        response = await globex.post(
            "/v1/sessions",
            json={"title": "s", "repo": str(mine), "settings": {"setup": {"files": [name]}}},
        )
        assert response.status_code == 422, response.text
        assert response.json()["code"] in {"invalid_setup", "validation_error"}, response.text


async def test_a_push_goes_only_where_the_policy_still_allows(
    api: httpx.AsyncClient,
    state: AppState,
    settings: OrchestratorSettings,
    tmp_path: Path,
    workspace: Path,
) -> None:
    repo = init_repo(tmp_path / "pushed")
    session = await new_session(api, repo, settings={"push": True, "gates": {"detect": False}})
    sid = session["id"]
    mirror = workspace / "repos" / f"{sid}.git"

    async def checkpoint() -> dict[str, Any]:
        made = await api.post(f"/v1/sessions/{sid}/checkpoints")
        assert made.status_code == 202
        assert await state.background.checkpoints_once() == 1
        done: dict[str, Any] = (
            await api.get(f"/v1/sessions/{sid}/checkpoints/{made.json()['number']}")
        ).json()
        return done

    def pushed_tags() -> str:
        return git.git("tag", "--list", cwd=repo).stdout

    first = await checkpoint()
    assert first["pushed"] is True, first
    assert f"swarm/{sid}/checkpoint-1" in pushed_tags()

    # The repository's config rewrites the URL (a worktree can write it): no push.
    decoy = init_repo(tmp_path / "decoy")
    git.git("config", f"url.{decoy}.insteadOf", str(repo), git_dir=mirror)
    second = await checkpoint()
    assert second["pushed"] is False and "rewrites URLs" in second["error"], second
    git.git("config", "--remove-section", f"url.{decoy}", git_dir=mirror)
    assert "checkpoint" not in git.git("tag", "--list", cwd=decoy).stdout

    # The operator no longer allows the folder: the next push is refused, not made.
    settings.local_repo_roots = [tmp_path / "elsewhere"]
    third = await checkpoint()
    assert third["status"] == "passed" and third["pushed"] is False, third
    assert "not pushed" in third["error"]
    assert f"checkpoint-{third['number']}" not in pushed_tags()


async def test_a_tenants_session_pushes_to_no_local_repository(
    two_tenants: dict[str, Any], state: AppState, tmp_path: Path
) -> None:
    """A push into a repository on the orchestrator's host runs that repository's hooks
    there: a tenant (who may write its own folders) gets none."""
    globex = two_tenants["globex"]
    repo = init_repo(tmp_path / "globex" / "hooked")
    hook = repo / ".git" / "hooks" / "post-receive"
    hook.write_text(f"#!/bin/sh\ntouch {tmp_path}/hook-ran\n")
    hook.chmod(0o755)
    session = await new_session(globex, repo, settings={"push": True, "gates": {"detect": False}})
    made = await globex.post(f"/v1/sessions/{session['id']}/checkpoints")
    assert await state.background.checkpoints_once() == 1
    done = (await globex.get(f"/v1/sessions/{session['id']}/checkpoints/1")).json()
    assert done["status"] == "passed" and done["pushed"] is False, (made.json(), done)
    assert "remote repositories only" in done["error"]
    assert not (tmp_path / "hook-ran").exists()


needs_namespaces = pytest.mark.skipif(
    not confine.available(), reason="this kernel allows no user namespaces"
)


@needs_namespaces
async def test_a_checkpoint_gate_sees_no_password_token_mirror_or_environment(
    api: httpx.AsyncClient,
    state: AppState,
    settings: OrchestratorSettings,
    tmp_path: Path,
    workspace: Path,
) -> None:
    found = {name: secrets.token_hex(16) for name in ("pg", "admin", "mirror")}
    data = tmp_path / "data"
    data.mkdir()
    (data / "postgres.password").write_text(found["pg"])
    (data / "admin.token").write_text(found["admin"])
    settings.hidden_paths = [data]
    other = await new_session(api, init_repo(tmp_path / "other", {"s.txt": found["mirror"]}))
    other_mirror = workspace / "repos" / f"{other['id']}.git"
    reads = " ; ".join(
        [
            f"cat {data}/postgres.password {data}/admin.token",
            f"git --git-dir={other_mirror} show HEAD:s.txt",
            f"test -r /proc/{os.getpid()}/environ && echo orchestrator-environ-readable",
            f"echo repos=$(ls {workspace}/repos | tr '\\n' ,)",
            "echo own=$(git rev-parse HEAD)",
            "true",
        ]
    )
    # Confined, the gate first tries to undo its mounts (they are locked: it is not root
    # where they were made) and to plant a filter in its mirror's config. Never run this
    # part unconfined: as root, `umount -l /proc` would unmount the host's.
    escape = " ; ".join(
        [
            f"umount -l {workspace} ; umount -l {data} ; umount -l /proc",
            'echo \'[filter "x"]\' >> "$(git rev-parse --git-common-dir)/config"',
        ]
    )
    session = await _gated(api, init_repo(tmp_path / "mine"), f"{escape} ; {reads}")
    sid = session["id"]

    async def gate_output(sid: str) -> str:
        assert (await api.post(f"/v1/sessions/{sid}/checkpoints")).status_code == 202
        assert await state.background.checkpoints_once() == 1
        rows = (await api.get(f"/v1/sessions/{sid}/checkpoints")).json()
        gate = rows[-1]["gates"][0]
        log = (workspace / gate["log_path"]).read_text()
        return f"{gate['output_tail']}\n{log}"

    seen = await gate_output(sid)
    assert f"own={session['base_commit']}" in seen  # the gate ran, with its own repository
    assert f"repos={sid}.git,\n" in seen  # of all the mirrors, its own only
    for name, secret in found.items():
        assert secret not in seen, f"a checkpoint gate read the {name} secret"
    assert "orchestrator-environ-readable" not in seen
    assert "Read-only file system" in seen  # its mirror's config, which Swarm's git reads
    assert "filter" not in (workspace / "repos" / f"{sid}.git" / "config").read_text()

    # The same reads unconfined get them all: the probe would see a leak.
    settings.confine_checkpoint_gates = False
    control = await _gated(api, init_repo(tmp_path / "control"), reads)
    leaked = await gate_output(control["id"])
    assert all(secret in leaked for secret in found.values())
    assert "orchestrator-environ-readable" in leaked


async def _gated(api: httpx.AsyncClient, repo: Path, command: str) -> dict[str, Any]:
    return await new_session(
        api, repo, settings={"gates": {"detect": False, "mode": "strict", "test": command}}
    )


def test_confinement_hides_files_and_keeps_what_is_exposed(tmp_path: Path) -> None:
    if not confine.available():
        pytest.skip("this kernel allows no user namespaces")
    import subprocess

    hidden = tmp_path / "hidden"
    (hidden / "mine").mkdir(parents=True)
    (hidden / "theirs").mkdir()
    (hidden / "theirs" / "secret").write_text("s")
    lone = tmp_path / "lone.password"
    lone.write_text("pw")
    box = confine.Confinement(hide=(hidden, lone), expose=(hidden / "mine",))
    script = (
        "umount -l hidden 2>/dev/null; cat lone.password; ls hidden; ls hidden/theirs; "
        "echo made > hidden/mine/out"
    )
    done = subprocess.run(
        box.wrap(["sh", "-c", script]), cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.stdout.split() == ["mine"], done
    assert (hidden / "mine" / "out").read_text() == "made\n"
    assert lone.read_text() == "pw" and (hidden / "theirs" / "secret").exists()


@pytest.mark.parametrize("root", ["workspace", "data"])
def test_the_workspace_and_hidden_folders_are_never_sources_even_under_a_root(
    tmp_path: Path, root: str
) -> None:
    workspace, data = tmp_path / "ws", tmp_path / "data"
    repo = init_repo((workspace if root == "workspace" else data) / "r")
    settings = OrchestratorSettings(
        workspace=workspace, hidden_paths=[data], local_repo_roots=[tmp_path]
    )
    with pytest.raises(SwarmError) as refused:
        RepoPolicy.from_settings(settings).check(str(repo), tenant=None)
    assert refused.value.code == "repo_not_allowed"
    assert RepoPolicy.from_settings(settings).check(str(init_repo(tmp_path / "fine")), tenant=None)
    with pytest.raises(SwarmError):  # a tenant gets no system-wide root unless configured
        RepoPolicy.from_settings(settings).check(str(tmp_path / "fine"), tenant=uuid.uuid4().hex)


async def test_clone_errors_do_not_tell_one_port_from_another(
    api: httpx.AsyncClient, redis_url: str, database_url: str, settings: OrchestratorSettings
) -> None:
    """Probing the orchestrator's network with `repo` URLs learns nothing: a closed port,
    Redis (which never finishes a TLS handshake: the clone times out) and PostgreSQL answer
    the same."""
    from swarm_cli.local.embedded import free_port

    settings.git_timeout_s = 3

    ports = [free_port(), urlsplit(redis_url).port or 6379, urlsplit(database_url).port or 5432]
    answers = set()
    for port in ports:
        url = f"https://127.0.0.1:{port}/x.git"
        response = await api.post("/v1/sessions", json={"title": "probe", "repo": url})
        assert (response.status_code, response.json()["code"]) == (422, "repo_unavailable")
        answers.add(response.json()["message"].replace(url, "<url>"))
    assert len(answers) == 1, answers
