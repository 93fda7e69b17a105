"""Checkpoints of a session's integration branch.

`request` stores a checkpoint of the integration head as it stands; `run_due` (a background
loop) leases pending checkpoints, runs the session's quality gates on that commit in a
worktree of its own, and when they pass fast-forwards the target branch (never a forced
move) and tags `swarm/<session>/checkpoint-N`, optionally pushing both to the session's
origin. A checkpoint whose orchestrator died is leased again when its lease runs out; the
ref updates are compare-and-swap, so running one twice changes nothing the second time.

Rolling back to a passed checkpoint is `rollback`'s. Every step is on the timeline with who
asked.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common import git
from swarm_common.gates import GATE_NAMES, GateResult, blocking_failures, plan_gates, run_gates
from swarm_common.messages import utcnow
from swarm_orchestrator.db import timeline
from swarm_orchestrator.db.models import Checkpoint, Session
from swarm_orchestrator.graph.locking import lock_open_session, lock_session
from swarm_orchestrator.integration.merges import session_settings

__all__ = ["request", "run_due", "tag_name"]

log = logging.getLogger(__name__)

LEASE_MARGIN_S = 300.0
_ENV_KEEP = ("PATH", "LANG", "LC_ALL", "TZ")


def tag_name(session_id: uuid.UUID, number: int) -> str:
    return f"swarm/{session_id}/checkpoint-{number}"


async def request(db: AsyncSession, *, session_id: uuid.UUID, actor: str) -> Checkpoint:
    """Store a checkpoint of the current integration head; it runs in the background."""
    session = await lock_open_session(db, session_id)
    number = (
        await db.scalar(
            select(func.coalesce(func.max(Checkpoint.number), 0)).where(
                Checkpoint.session_id == session_id
            )
        )
        or 0
    ) + 1
    checkpoint = Checkpoint(
        session_id=session_id,
        number=number,
        status="pending",
        commit=session.integration_head or session.base_commit,
        target_branch=session.target_branch,
        tag=tag_name(session_id, number),
        requested_by=actor,
        runs=0,
    )
    db.add(checkpoint)
    timeline.record(
        db,
        session_id=session_id,
        type="checkpoint.requested",
        actor=actor,
        data={"number": number, "commit": checkpoint.commit},
    )
    await db.commit()
    log.info("checkpoint requested", extra={"session_id": str(session_id), "number": number})
    return checkpoint


_LEASE_SQL = text("""
UPDATE checkpoints SET status = 'running', runs = runs + 1, started_at = now(),
       lease_until = now() + make_interval(secs => :lease)
WHERE id = (
    SELECT id FROM checkpoints
    WHERE status = 'pending' OR (status = 'running' AND lease_until < now())
    ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1
)
RETURNING id, runs
""")


@dataclass(frozen=True)
class _Lease:
    id: int
    runs: int


async def run_due(
    sessionmaker: async_sessionmaker[AsyncSession], *, workspace: Path, limit: int = 10
) -> int:
    """Run checkpoints that wait (or whose runner died); return how many finished."""
    finished = 0
    while finished < limit:
        async with sessionmaker() as db, db.begin():
            lease_s = await _lease_seconds(db)
            row = (await db.execute(_LEASE_SQL, {"lease": lease_s})).first()
        if row is None:
            return finished
        await _run(sessionmaker, _Lease(id=row.id, runs=row.runs), workspace=workspace)
        finished += 1
    return finished


async def _lease_seconds(db: AsyncSession) -> float:
    """Long enough for the slowest session's gates: the sum of their timeouts, plus a margin."""
    pending = (
        await db.scalars(
            select(Session)
            .join(Checkpoint, Checkpoint.session_id == Session.id)
            .where(Checkpoint.status.in_(["pending", "running"]))
            .distinct()
        )
    ).all()
    longest = 0.0
    for session in pending:
        gates = session_settings(session).gates
        longest = max(longest, sum(gates.timeouts.get(n, gates.timeout_s) for n in GATE_NAMES))
    return longest + LEASE_MARGIN_S


async def _run(
    sessionmaker: async_sessionmaker[AsyncSession], lease: _Lease, *, workspace: Path
) -> None:
    async with sessionmaker() as db:
        checkpoint = await db.get(Checkpoint, lease.id)
        assert checkpoint is not None
        session = await db.get(Session, checkpoint.session_id)
        assert session is not None
    mirror = workspace / session.repo_path
    config = session_settings(session).gates
    place = workspace / "checkpoints" / str(session.id) / f"{checkpoint.number}-{lease.runs}"
    results: list[GateResult] = []
    error = ""
    try:
        await asyncio.to_thread(_add_detached, mirror, place / "tree", checkpoint.commit)
        plan = plan_gates(config, place / "tree")
        results = await run_gates(
            plan,
            cwd=place / "tree",
            env=_gate_env(place / "home"),
            log_dir=workspace / "artifacts" / str(session.id) / f"checkpoint-{checkpoint.number}",
            cancel=asyncio.Event(),
            relative_to=workspace,
        )
    except (git.GitError, TimeoutError, OSError) as exc:
        error = f"cannot check out {checkpoint.commit[:12]}: {exc}"
    finally:
        await asyncio.to_thread(_remove_detached, mirror, place)
    failures = blocking_failures(results, config.mode)
    if failures and not error:
        error = "gate " + ", ".join(f.name for f in failures) + " failed"
    await _finish(sessionmaker, lease, workspace=workspace, results=results, error=error)


def _gate_env(home: Path) -> dict[str, str]:
    """Gates run in the orchestrator's process, which holds database and Redis credentials:
    they get only a few harmless variables and a private HOME."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k in _ENV_KEEP}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(HOME=str(home), CI="1")
    return env


def _add_detached(mirror: Path, path: Path, commit: str) -> None:
    with git.repo_lock(mirror):
        shutil.rmtree(path, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        git.git(
            "worktree", "add", "--force", "--detach", "--quiet", str(path), commit, git_dir=mirror
        )


def _remove_detached(mirror: Path, place: Path) -> None:
    with git.repo_lock(mirror):
        git.git(
            "worktree",
            "remove",
            "--force",
            "--force",
            str(place / "tree"),
            git_dir=mirror,
            check=False,
        )
        shutil.rmtree(place, ignore_errors=True)
        git.git("worktree", "prune", git_dir=mirror, check=False)


async def _finish(
    sessionmaker: async_sessionmaker[AsyncSession],
    lease: _Lease,
    *,
    workspace: Path,
    results: list[GateResult],
    error: str,
) -> None:
    async with sessionmaker() as db, db.begin():
        checkpoint = await db.get(Checkpoint, lease.id, with_for_update=True)
        if checkpoint is None or checkpoint.status != "running" or checkpoint.runs != lease.runs:
            return  # another runner took it over after our lease ran out
        session = await lock_session(db, checkpoint.session_id)
        assert session is not None
        pushed: bool | None = None
        if not error:
            try:
                pushed, push_error = await asyncio.to_thread(
                    _publish,
                    workspace / session.repo_path,
                    checkpoint,
                    session_settings(session).push,
                )
            except git.GitError as exc:
                error = exc.stderr[:2000] or str(exc)
            else:
                if push_error:
                    checkpoint.error = push_error[:2000]
        checkpoint.status = "failed" if error else "passed"
        if error:
            checkpoint.error = error[:4000]
        checkpoint.pushed = pushed
        checkpoint.gates = [r.model_dump(mode="json") for r in results] or None
        checkpoint.finished_at = utcnow()
        checkpoint.lease_until = None
        data: dict[str, Any] = {
            "number": checkpoint.number,
            "commit": checkpoint.commit,
            "gates": [{"name": r.name, "status": r.status} for r in results],
        }
        if error:
            data["error"] = error[:2000]
        else:
            data.update(tag=checkpoint.tag, target_branch=checkpoint.target_branch, pushed=pushed)
        timeline.record(
            db,
            session_id=session.id,
            type=f"checkpoint.{checkpoint.status}",
            actor=checkpoint.requested_by,
            data=data,
        )
    log.info(
        "checkpoint finished",
        extra={"session_id": str(checkpoint.session_id), "status": checkpoint.status},
    )


def _publish(mirror: Path, checkpoint: Checkpoint, push: bool) -> tuple[bool | None, str]:
    """Fast-forward the target branch and tag the commit (both compare-and-swap); push them
    to origin when asked. Returns whether the push happened and why not."""
    commit = checkpoint.commit
    refs = []
    with git.repo_lock(mirror):
        if checkpoint.target_branch:
            ref = f"refs/heads/{checkpoint.target_branch}"
            current = git.branch_head(mirror, checkpoint.target_branch)
            if current != commit:
                if current is not None and not git.is_ancestor(mirror, current, commit):
                    raise git.GitError(
                        ["update-ref", ref],
                        1,
                        f"target branch {checkpoint.target_branch} has commits the integration "
                        "branch lacks; it cannot be fast-forwarded",
                    )
                git.update_ref(
                    mirror, ref, commit, old=current or git.ZERO, reason="swarm: checkpoint"
                )
            refs.append(f"{commit}:{ref}")
        tag_ref = f"refs/tags/{checkpoint.tag}"
        existing = git.git("rev-parse", "-q", "--verify", tag_ref, git_dir=mirror, check=False)
        if existing.stdout.strip() != commit:
            git.update_ref(mirror, tag_ref, commit, old=git.ZERO, reason="swarm: checkpoint")
        refs.append(f"{tag_ref}:{tag_ref}")
    if not push:
        return None, ""
    proc = git.git("push", "--quiet", "--porcelain", "origin", *refs, git_dir=mirror, check=False)
    if proc.returncode != 0:
        return False, f"push to origin failed: {proc.stderr.strip()[:1500]}"
    return True, ""
