"""The inventory of the repositories a tenant may use, kept for people and for the planner.

What it owns: the `inventory_projects` rows (the only writer). A scan checks every root
against the repository policy (`RepoPolicy.check_folder`: under the caller's roots, not a
forbidden folder), walks them off the event loop with `swarm_common.inventory.scan` (never
entering the forbidden folders beneath a root, at most `MAX_CONCURRENT_SCANS` at once per
process, bounded in depth, projects and time), and then, in one transaction, replaces what
the tenant's earlier scans found under those roots. `describe_repository` gives the same
record for one commit of a session's bare mirror, which has no worktree to scan.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import ColumnElement, delete, func, insert, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from swarm_common import inventory
from swarm_common.inventory import InventoryError, Project
from swarm_orchestrator.db.advisory import lock_key
from swarm_orchestrator.db.models import InventoryProject
from swarm_orchestrator.errors import Invalid, SwarmError
from swarm_orchestrator.integration.repo_policy import RepoPolicy

__all__ = [
    "MAX_CONCURRENT_SCANS",
    "MAX_DEPTH",
    "MAX_PROJECTS",
    "MAX_ROOTS",
    "SCAN_TIMEOUT_S",
    "Scanned",
    "describe_repository",
    "list_projects",
    "scan_roots",
]

log = logging.getLogger(__name__)

MAX_ROOTS = 16
MAX_DEPTH = 8
"""Deepest folder below a root that a project is looked for in."""
MAX_PROJECTS = 5000
"""Most projects one scan may find (more is a 422 `too_many_projects`)."""
SCAN_TIMEOUT_S = 300.0
MAX_CONCURRENT_SCANS = 2
"""Scans one orchestrator process runs at once (more is a 429 `inventory_busy`)."""

_SCANS = threading.BoundedSemaphore(MAX_CONCURRENT_SCANS)
_STATUS = {"too_many_projects": 422, "scan_timeout": 422, "inventory_busy": 429}


def _scan_bounded(roots: list[Path], *, max_depth: int, exclude: Sequence[Path]) -> list[Project]:
    """Scan in a worker thread, if a slot is free; the slot is taken and given back in the
    thread itself, so a request that goes away never leaves a slot taken."""
    if not _SCANS.acquire(blocking=False):
        raise InventoryError(
            "the orchestrator is already running as many inventory scans as it may; try again "
            "shortly",
            code="inventory_busy",
        )
    try:
        return inventory.scan(
            roots,
            max_depth=max_depth,
            exclude=exclude,
            max_projects=MAX_PROJECTS,
            timeout_s=SCAN_TIMEOUT_S,
        )
    finally:
        _SCANS.release()


@dataclass(frozen=True)
class Scanned:
    roots: list[Path]
    """The roots scanned, resolved."""
    projects: list[InventoryProject]
    """What is stored under them now."""


async def scan_roots(
    db: AsyncSession,
    *,
    roots: Sequence[str],
    max_depth: int,
    policy: RepoPolicy,
    tenant: str | None,
    actor: str,
) -> Scanned:
    """Scan `roots` for a principal of `tenant` and store what was found in place of the
    tenant's earlier findings under them (and of the same projects found from elsewhere).
    Raises 403 `repo_not_allowed` or 422 (`root_not_found`, `invalid_root`,
    `too_many_projects`, `scan_timeout`) with nothing stored, or 429 `inventory_busy`."""
    if not 0 <= max_depth <= MAX_DEPTH:
        raise Invalid(f"max_depth must be between 0 and {MAX_DEPTH}", code="invalid_depth")
    resolved = list(dict.fromkeys(policy.check_folder(r, tenant=tenant) for r in roots))
    try:
        found = await asyncio.to_thread(
            _scan_bounded, resolved, max_depth=max_depth, exclude=policy.forbidden
        )
    except InventoryError as exc:
        raise SwarmError(str(exc), code=exc.code, status=_STATUS.get(exc.code, 422)) from None
    log.info(
        "inventory scanned",
        extra={"roots": len(resolved), "projects": len(found), "tenant": tenant, "by": actor},
    )
    await db.rollback()  # no transaction held open across the scan
    async with db.begin():
        await _replace(
            db, roots=resolved, projects=found, max_depth=max_depth, tenant=tenant, actor=actor
        )
    stored = await list_projects(
        db, tenant=tenant, all_tenants=False, under=resolved, limit=MAX_PROJECTS
    )
    return Scanned(roots=resolved, projects=stored)


async def _replace(
    db: AsyncSession,
    *,
    roots: list[Path],
    projects: list[Project],
    max_depth: int,
    tenant: str | None,
    actor: str,
) -> None:
    # Concurrent scans of one tenant take turns here, so none sees the other's half.
    await db.execute(select(func.pg_advisory_xact_lock(lock_key(f"inventory:{tenant or ''}"))))
    paths = [p.path for p in projects]
    mine = (
        InventoryProject.tenant.is_(None) if tenant is None else InventoryProject.tenant == tenant
    )
    await db.execute(
        delete(InventoryProject).where(
            mine,
            or_(_under_any(roots), InventoryProject.path.in_(paths) if paths else literal(False)),
        )
    )
    if projects:
        rows = [
            {
                "tenant": tenant,
                "max_depth": max_depth,
                "scanned_by": actor,
                **p.model_dump(include=_STORED),
            }
            for p in projects
        ]
        await db.execute(insert(InventoryProject), rows)


_STORED = {
    "root",
    "path",
    "name",
    "kind",
    "languages",
    "build_systems",
    "files",
    "size_bytes",
    "commits_30d",
    "readme",
}


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _under_any(folders: Sequence[Path | str]) -> ColumnElement[bool]:
    """Rows whose project lies in one of `folders` (the folder itself or below it)."""
    conditions = []
    for folder in folders:
        text = str(folder).rstrip("/") or "/"
        below = text if text == "/" else text + "/"
        conditions.append(InventoryProject.path == text)
        conditions.append(InventoryProject.path.like(_escape_like(below) + "%", escape="\\"))
    return or_(*conditions)


async def list_projects(
    db: AsyncSession,
    *,
    tenant: str | None,
    all_tenants: bool,
    under: Sequence[Path | str] = (),
    limit: int = 1000,
    offset: int = 0,
) -> list[InventoryProject]:
    """Stored projects, the newest scan first (by path within one): a tenant's own, or with
    `all_tenants` everyone's; `under` keeps those in these folders."""
    stmt = select(InventoryProject).order_by(
        InventoryProject.scanned_at.desc(), InventoryProject.path, InventoryProject.id
    )
    if not all_tenants:
        stmt = stmt.where(
            InventoryProject.tenant.is_(None)
            if tenant is None
            else InventoryProject.tenant == tenant
        )
    if under:
        stmt = stmt.where(_under_any(under))
    return list((await db.scalars(stmt.limit(limit).offset(offset))).all())


async def describe_repository(
    git_dir: Path, commit: str = "HEAD", *, name: str | None = None
) -> Project:
    """The inventory record of `commit` of a bare repository (a session's mirror), for the
    planner; off the event loop. Raises 422 (`unknown_commit`, `git_failed`)."""
    try:
        return await asyncio.to_thread(inventory.describe_commit, git_dir, commit, name=name)
    except InventoryError as exc:
        raise Invalid(str(exc), code=exc.code) from None
