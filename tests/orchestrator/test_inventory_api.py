"""`/v1/inventory`: a scan stores what it found and replaces the earlier findings under its
roots; tenants see and scan only their own; roots outside the repository policy are refused
with nothing stored; bad input is a 4xx; and the planner's view of a session's mirror."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from swarm_orchestrator.api.deps import AppState
from swarm_orchestrator.db.models import InventoryProject
from swarm_orchestrator.planning import inventory
from swarm_orchestrator.settings import OrchestratorSettings
from tests.conftest import init_repo
from tests.orchestrator.helpers import count_rows, new_session, tenant_client


def make_projects(folder: Path) -> None:
    init_repo(folder / "app", {"main.py": "print(1)\n", "pyproject.toml": "", "README.md": "# App"})
    init_repo(folder / "web", {"index.ts": "1\n", "package.json": "{}"})
    (folder / "tool").mkdir(parents=True)
    (folder / "tool" / "Makefile").write_text("all:\n")


async def post(client: httpx.AsyncClient, *roots: Path | str, max_depth: int = 2) -> httpx.Response:
    return await client.post(
        "/v1/inventory", json={"roots": [str(r) for r in roots], "max_depth": max_depth}
    )


def names(projects: list[dict[str, Any]]) -> list[str]:
    return sorted(p["name"] for p in projects)


async def test_a_scan_is_stored_and_listed(
    api: httpx.AsyncClient, state: AppState, tmp_path: Path, workspace: Path
) -> None:
    src = tmp_path / "src"
    make_projects(src)
    init_repo(workspace / "repos" / "hidden")  # the workspace lies under the root: not entered

    scanned = await post(api, tmp_path)
    assert scanned.status_code == 200, scanned.text
    body = scanned.json()
    assert body["roots"] == [str(tmp_path.resolve())] and body["max_depth"] == 2
    assert names(body["projects"]) == ["app", "tool", "web"]
    app = next(p for p in body["projects"] if p["name"] == "app")
    assert app["kind"] == "git" and app["files"] == 3 and app["commits_30d"] == 1
    assert app["languages"] == [{"name": "Python", "files": 1, "share": 1.0}]
    assert app["build_systems"] == ["pyproject"] and app["readme"] == "# App"
    assert app["tenant"] is None and app["scanned_by"] == "token:bootstrap"
    tool = next(p for p in body["projects"] if p["name"] == "tool")
    assert (tool["kind"], tool["commits_30d"], tool["build_systems"]) == ("build", None, ["make"])

    listed = (await api.get("/v1/inventory")).json()
    assert names(listed) == ["app", "tool", "web"]
    assert (await api.get("/v1/inventory", params={"root": str(src / "web")})).json()[0][
        "name"
    ] == "web"
    assert (await api.get("/v1/inventory", params={"root": str(tmp_path / "none")})).json() == []
    assert await count_rows(state.sessionmaker, InventoryProject) == 3


async def test_a_new_scan_replaces_the_old_one_under_its_roots(
    api: httpx.AsyncClient, state: AppState, tmp_path: Path
) -> None:
    make_projects(tmp_path / "one")
    make_projects(tmp_path / "two")
    assert (await post(api, tmp_path / "one", tmp_path / "two")).status_code == 200
    assert await count_rows(state.sessionmaker, InventoryProject) == 6

    shutil.rmtree(tmp_path / "one" / "web")
    again = await post(api, tmp_path / "one")
    assert names(again.json()["projects"]) == ["app", "tool"]
    assert await count_rows(state.sessionmaker, InventoryProject) == 5  # two/ kept
    # The same projects, scanned from a folder above: stored once, under the new root.
    above = await post(api, tmp_path, max_depth=3)
    assert len(above.json()["projects"]) == 5
    listed = (await api.get("/v1/inventory")).json()
    assert len(listed) == 5 and {p["root"] for p in listed} == {str(tmp_path.resolve())}


async def test_tenants_scan_and_see_only_their_own(
    api: httpx.AsyncClient, state: AppState, settings: OrchestratorSettings, tmp_path: Path
) -> None:
    settings.tenants_use_local_roots = False
    settings.tenant_repo_roots = {"acme": [tmp_path / "acme"], "globex": [tmp_path / "globex"]}
    make_projects(tmp_path / "acme")
    make_projects(tmp_path / "globex")
    acme = await tenant_client(api, "acme")
    globex = await tenant_client(api, "globex")
    viewer = await tenant_client(api, "globex", role="viewer")
    async with acme, globex, viewer:
        assert (await post(acme, tmp_path / "acme")).status_code == 200
        refused = await post(globex, tmp_path / "acme")
        assert (refused.status_code, refused.json()["code"]) == (403, "repo_not_allowed")
        # One root refused: nothing of the request is scanned or stored.
        mixed = await post(globex, tmp_path / "globex", tmp_path / "acme" / "app")
        assert (mixed.status_code, mixed.json()["code"]) == (403, "repo_not_allowed")
        assert (await globex.get("/v1/inventory")).json() == []
        assert (await post(globex, tmp_path / "globex")).status_code == 200

        mine = (await globex.get("/v1/inventory")).json()
        assert names(mine) == ["app", "tool", "web"] and {p["tenant"] for p in mine} == {"globex"}
        assert {p["tenant"] for p in (await acme.get("/v1/inventory")).json()} == {"acme"}
        asked = await viewer.get("/v1/inventory", params={"root": str(tmp_path / "acme")})
        assert asked.json() == []
        forbidden = await post(viewer, tmp_path / "globex")
        assert (forbidden.status_code, forbidden.json()["code"]) == (403, "forbidden")
    everyone = (await api.get("/v1/inventory")).json()  # a token without a tenant
    assert sorted({p["tenant"] for p in everyone}) == ["acme", "globex"]
    # The server's own roots are not the tenants' (SWARM_TENANTS_USE_LOCAL_ROOTS is off).
    assert await count_rows(state.sessionmaker, InventoryProject) == 6


async def test_refusals_store_nothing(
    api: httpx.AsyncClient,
    state: AppState,
    settings: OrchestratorSettings,
    tmp_path: Path,
    workspace: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_projects(tmp_path / "src")
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"roots": ["/"], "max_depth": 1}, 403, "repo_not_allowed"),
        ({"roots": [str(workspace)], "max_depth": 1}, 403, "repo_not_allowed"),
        ({"roots": [str(tmp_path / "missing")], "max_depth": 1}, 422, "root_not_found"),
        ({"roots": ["/etc/no-such-folder"], "max_depth": 1}, 403, "repo_not_allowed"),
        ({"roots": [str(tmp_path / "src" / "tool" / "Makefile")]}, 422, "invalid_root"),
        ({"roots": ["relative/path"]}, 422, "invalid_root"),
        ({"roots": [str(tmp_path) + "\u0000x"]}, 422, "validation_error"),
        ({"roots": []}, 422, "validation_error"),
        ({"roots": [str(tmp_path)] * 17}, 422, "validation_error"),
        ({"roots": [str(tmp_path)], "max_depth": 9}, 422, "validation_error"),
        ({"roots": [str(tmp_path)], "max_depth": -1}, 422, "validation_error"),
        ({"roots": [str(tmp_path)], "extra": 1}, 422, "validation_error"),
        ({"roots": "not-a-list"}, 422, "validation_error"),
    ]
    for body, status, code in cases:
        response = await api.post("/v1/inventory", json=body)
        assert (response.status_code, response.json()["code"]) == (status, code), body
    surrogate = await api.post(
        "/v1/inventory",
        content=b'{"roots": ["' + str(tmp_path).encode() + b'/\\ud800"]}',
        headers={"content-type": "application/json"},
    )
    assert (surrogate.status_code, surrogate.json()["code"]) == (422, "invalid_root")
    monkeypatch.setattr(inventory, "MAX_PROJECTS", 2)
    too_many = await post(api, tmp_path)
    assert (too_many.status_code, too_many.json()["code"]) == (422, "too_many_projects")
    settings.local_repo_roots = []
    settings.tenants_use_local_roots = False
    no_roots = await post(api, tmp_path)
    assert (no_roots.status_code, no_roots.json()["code"]) == (403, "repo_not_allowed")
    assert await count_rows(state.sessionmaker, InventoryProject) == 0
    bad_filter = await api.get("/v1/inventory", params={"root": "relative"})
    assert (bad_filter.status_code, bad_filter.json()["code"]) == (422, "invalid_root")


async def test_scans_at_once_are_bounded(
    api: httpx.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_projects(tmp_path / "src")
    slots = threading.BoundedSemaphore(1)
    monkeypatch.setattr(inventory, "_SCANS", slots)
    assert slots.acquire(blocking=False)  # another scan runs
    busy = await post(api, tmp_path)
    assert (busy.status_code, busy.json()["code"]) == (429, "inventory_busy")
    slots.release()
    assert (await post(api, tmp_path)).status_code == 200
    assert slots.acquire(blocking=False)  # given back after the scan


async def test_the_planner_describes_a_session_mirror(
    api: httpx.AsyncClient, git_repo: Path, workspace: Path
) -> None:
    session = await new_session(api, git_repo)
    mirror = workspace / "repos" / f"{session['id']}.git"
    described = await inventory.describe_repository(mirror, "main", name="repo")
    assert (described.name, described.files, described.commits_30d) == ("repo", 1, 1)
    assert described.readme == "# test repo" and described.commit == session["base_commit"]
