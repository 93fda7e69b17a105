"""`/v1/inventory`: scan folders for projects (git repositories, folders with a build file)
and read back what scans found. A tenant's token scans its own roots and sees its own
projects; a token without a tenant sees everyone's (each row names its tenant)."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from swarm_common.inventory import LanguageShare
from swarm_common.specs import Text
from swarm_orchestrator.api.deps import DbDep, StateDep
from swarm_orchestrator.api.schemas import MAX_INT, error_responses
from swarm_orchestrator.api.security import Operator, Viewer
from swarm_orchestrator.errors import Invalid
from swarm_orchestrator.integration.repo_policy import RepoPolicy
from swarm_orchestrator.planning import inventory

router = APIRouter(prefix="/v1/inventory", tags=["inventory"])

_ERRORS = error_responses()


class InventoryCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    roots: list[Annotated[Text, Field(min_length=1, max_length=4096)]] = Field(
        min_length=1,
        max_length=inventory.MAX_ROOTS,
        description="Absolute paths of folders under the caller's repository roots.",
    )
    max_depth: int = Field(
        3,
        ge=0,
        le=inventory.MAX_DEPTH,
        description="How many folders below each root a project is looked for (0: the root).",
    )


class InventoryProjectPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    tenant: str | None
    root: str
    path: str
    name: str
    kind: str = Field(description="`git` (a repository) or `build` (a build file, no git).")
    languages: list[LanguageShare] = Field(
        description="Most used first; `share` of the files in any known language."
    )
    build_systems: list[str]
    files: int
    size_bytes: int
    commits_30d: int | None = Field(description="Commits of the last 30 days; null without git.")
    readme: str = Field(description="The README's first characters.")
    max_depth: int
    scanned_by: str
    scanned_at: datetime


class InventoryScanPublic(BaseModel):
    roots: list[str] = Field(description="The roots scanned, as resolved.")
    max_depth: int
    seconds: float = Field(description="How long the scan and its storing took.")
    projects: list[InventoryProjectPublic]


@router.post("", responses=_ERRORS)
async def scan(
    body: InventoryCreate, db: DbDep, state: StateDep, who: Operator
) -> InventoryScanPublic:
    """Scan the roots (in a worker thread; `.gitignore`d files skipped, symlinks never
    followed) and store the projects found, in place of earlier scans' findings under them.
    A root outside the caller's repository roots is 403 `repo_not_allowed`; a missing one
    422 `root_not_found`; too many projects 422 `too_many_projects`; nothing is stored then."""
    started = time.monotonic()
    policy = RepoPolicy.from_settings(state.settings)
    scanned = await inventory.scan_roots(
        db,
        roots=body.roots,
        max_depth=body.max_depth,
        policy=policy,
        tenant=who.tenant,
        actor=who.actor,
    )
    return InventoryScanPublic(
        roots=[str(r) for r in scanned.roots],
        max_depth=body.max_depth,
        seconds=round(time.monotonic() - started, 3),
        projects=[InventoryProjectPublic.model_validate(row) for row in scanned.projects],
    )


@router.get("", responses=_ERRORS)
async def list_inventory(
    db: DbDep,
    who: Viewer,
    root: Annotated[
        str | None,
        Query(max_length=4096, description="Only projects in this folder (or below it)."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=inventory.MAX_PROJECTS)] = 1000,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
) -> list[InventoryProjectPublic]:
    """Stored projects, the newest scan first."""
    if root is not None and (not root.startswith("/") or "\0" in root):
        raise Invalid("root must be an absolute path", code="invalid_root")
    try:
        under = [await asyncio.to_thread(os.path.realpath, root)] if root else []
    except (OSError, ValueError) as exc:
        raise Invalid(f"root is not a usable path: {exc}", code="invalid_root") from None
    rows = await inventory.list_projects(
        db,
        tenant=who.tenant,
        all_tenants=who.tenant is None,
        under=under,
        limit=limit,
        offset=offset,
    )
    return [InventoryProjectPublic.model_validate(row) for row in rows]
