"""Checkpoints of a session's integration branch.

`request` stores a checkpoint of the integration head as it stands; `run_leased` (given a
lease by `checkpoint_pool`) runs the session's quality gates on that commit in a worktree
of its own, confined (`swarm_common.confine`), and when they pass fast-forwards the target
branch (never a forced move) and tags `swarm/<session>/checkpoint-N`, optionally pushing
both to the session's repository. A checkpoint whose orchestrator died is leased again
when its lease runs out; the ref updates are compare-and-swap, so running one twice
changes nothing the second time. A cancelled session's checkpoint is never tagged.

A dry run's checkpoints (`integration.dry_run`) check its dry-run branch's head (the work
its tasks would have merged) and publish nothing: no target branch, no tag, no push.

A final checkpoint (`final`) is taken when a session's tasks have all ended
(`graph.session_state` asks for it, in the transaction that saw them end, through
`request_final`, which makes at most one of each head); its outcome settles the session
(`session_state.checkpoint_ended`) in the transaction that records it.

Rolling back to a passed checkpoint is `rollback`'s. Every step is on the timeline with who
asked.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common import confine, git
from swarm_common.gates import GateCommand, GateResult, blocking_failures, plan_gates, run_gates
from swarm_common.messages import utcnow
from swarm_common.redaction import Redactor, configured_secrets
from swarm_common.states import SessionStatus
from swarm_orchestrator.db import timeline
from swarm_orchestrator.db.models import Checkpoint, Session
from swarm_orchestrator.errors import SwarmError
from swarm_orchestrator.graph import scheduler, session_state
from swarm_orchestrator.graph.locking import lock_open_session, lock_session
from swarm_orchestrator.integration.merges import session_settings
from swarm_orchestrator.integration.repo_policy import RepoPolicy
from swarm_orchestrator.observability import metrics
from swarm_orchestrator.settings import OrchestratorSettings

__all__ = [
    "Lease",
    "demote_final",
    "head_verdict",
    "request",
    "request_final",
    "run_leased",
    "tag_name",
]

log = logging.getLogger(__name__)

_ENV_KEEP = ("PATH", "LANG", "LC_ALL", "TZ")
_HOME_SECRETS = (
    ".ssh",
    ".git-credentials",
    ".gitconfig",
    ".config/git",
    ".netrc",
    ".pgpass",
    ".config/gh",
    ".aws",
    ".docker",
    ".kube",
)
"""What a checkpoint gate does not see of the orchestrator's HOME."""


def tag_name(session_id: uuid.UUID, number: int) -> str:
    return f"swarm/{session_id}/checkpoint-{number}"


_OPEN = ("pending", "running")


async def request(db: AsyncSession, *, session_id: uuid.UUID, actor: str) -> Checkpoint:
    """Store a checkpoint of the current integration head; it runs in the background."""
    session = await lock_open_session(db, session_id)
    checkpoint = await _add(db, session, actor=actor, final=False)
    await db.commit()
    return checkpoint


async def request_final(db: AsyncSession, session: Session, *, actor: str) -> Checkpoint:
    """The final checkpoint of the session's integration head: the open one when there is
    one (asking twice makes no second), else a new one. The caller holds the session's lock
    and commits. Open final checkpoints of an older head settle nothing any more."""
    head = scheduler.work_head(session)
    found = None
    for checkpoint in await db.scalars(
        select(Checkpoint)
        .where(
            Checkpoint.session_id == session.id,
            Checkpoint.final.is_(True),
            Checkpoint.status.in_(_OPEN),
        )
        .order_by(Checkpoint.number)
    ):
        if checkpoint.commit == head and found is None:
            found = checkpoint
        else:
            checkpoint.final = False
    return found or await _add(db, session, actor=actor, final=True)


async def demote_final(db: AsyncSession, session_id: uuid.UUID) -> None:
    """The session was reopened: its open final checkpoints run as ordinary ones (they still
    tag what passes) and settle nothing."""
    await db.execute(
        update(Checkpoint)
        .where(
            Checkpoint.session_id == session_id,
            Checkpoint.final.is_(True),
            Checkpoint.status.in_(_OPEN),
        )
        .values(final=False)
    )


async def head_verdict(db: AsyncSession, session: Session) -> str | None:
    """How the integration head was checked: `passed` when a checkpoint of it passed,
    `failed` when its newest final checkpoint failed, None when neither."""
    head = scheduler.work_head(session)
    rows = (
        await db.execute(
            select(Checkpoint.status, Checkpoint.final)
            .where(Checkpoint.session_id == session.id, Checkpoint.commit == head)
            .order_by(Checkpoint.number.desc())
        )
    ).all()
    if any(status == "passed" for status, _ in rows):
        return "passed"
    final = next((status for status, is_final in rows if is_final), None)
    return "failed" if final == "failed" else None


async def _add(db: AsyncSession, session: Session, *, actor: str, final: bool) -> Checkpoint:
    """A new checkpoint of the integration head (the caller holds the session's lock)."""
    session_id = session.id
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
        commit=scheduler.work_head(session),
        target_branch=session.target_branch,
        tag=tag_name(session_id, number),
        requested_by=actor,
        runs=0,
        final=final,
    )
    db.add(checkpoint)
    timeline.record(
        db,
        session_id=session_id,
        type="checkpoint.requested",
        actor=actor,
        data={"number": number, "commit": checkpoint.commit, **({"final": True} if final else {})},
    )
    log.info(
        "checkpoint requested",
        extra={"session_id": str(session_id), "number": number, "final": final},
    )
    return checkpoint


@dataclass(frozen=True)
class Lease:
    """One run of one checkpoint (`checkpoint_pool` leases them)."""

    id: int
    runs: int


async def run_leased(
    sessionmaker: async_sessionmaker[AsyncSession],
    lease: Lease,
    *,
    settings: OrchestratorSettings,
    cancel: asyncio.Event,
) -> None:
    """Run the gates of the leased checkpoint (until `cancel` is set), then publish it or
    record why not."""
    async with sessionmaker() as db:
        checkpoint = await db.get(Checkpoint, lease.id)
        assert checkpoint is not None
        session = await db.get(Session, checkpoint.session_id)
        assert session is not None
    workspace = settings.workspace
    mirror = workspace / session.repo_path
    config = session_settings(session).gates
    place = workspace / "checkpoints" / str(session.id) / f"{checkpoint.number}-{lease.runs}"
    results: list[GateResult] = []
    error = ""
    try:
        await asyncio.to_thread(_add_detached, mirror, place / "tree", checkpoint.commit)
        plan = _capped(plan_gates(config, place / "tree"), settings.checkpoint_gate_max_s)
        wrap = await _confinement(settings, place=place, mirror=mirror) if plan else None
        redact = Redactor([*configured_secrets(os.environ), *settings.secrets()])
        results = await run_gates(
            plan,
            cwd=place / "tree",
            env=_gate_env(place / "home"),
            log_dir=workspace / "artifacts" / str(session.id) / f"checkpoint-{checkpoint.number}",
            cancel=cancel,
            relative_to=workspace,
            redact=redact.redact_bytes,
            wrap=wrap,
        )
        results = [r.model_copy(update={"output_tail": redact(r.output_tail)}) for r in results]
    except _Unconfined as exc:
        error = str(exc)
    except (git.GitError, TimeoutError, OSError) as exc:
        error = f"cannot check out {checkpoint.commit[:12]}: {exc}"
    finally:
        await asyncio.to_thread(_remove_detached, mirror, place)
    failures = blocking_failures(results, config.mode)
    if failures and not error:
        error = "gate " + ", ".join(f.name for f in failures) + " failed"
    if cancel.is_set() and not error:
        error = "cancelled: the session was cancelled or the system stopped"
    await _finish(sessionmaker, lease, settings=settings, results=results, error=error)


def _capped(plan: list[GateCommand], most_s: float) -> list[GateCommand]:
    """No checkpoint gate runs longer than `most_s` (`SWARM_CHECKPOINT_GATE_MAX_S`),
    whatever the session asks: checkpoints share the orchestrator's few slots."""
    return [dataclasses.replace(g, timeout_s=min(g.timeout_s, most_s)) for g in plan]


class _Unconfined(Exception):
    """Gates cannot be confined here, and the settings ask for it."""


async def _confinement(
    settings: OrchestratorSettings, *, place: Path, mirror: Path
) -> Callable[[list[str]], list[str]] | None:
    """How a checkpoint gate's command is wrapped (`swarm_common.confine`): in namespaces
    where the workspace is empty but for `place` (its checkout and HOME) and, read-only, its
    session's mirror (the checkout's own folder in it writable, for git's index), and the
    data folder, Swarm's git HOME and the credentials of the orchestrator's HOME are empty.
    A gate can change nothing the orchestrator's own git later reads (a mirror's config
    could otherwise name a filter or credential helper for it to run)."""
    if not settings.confine_checkpoint_gates:
        return None
    if not await asyncio.to_thread(confine.available):
        raise _Unconfined(
            "checkpoint gates cannot run confined here (the kernel, or a container's seccomp "
            "profile, allows no user and mount namespace); set "
            "SWARM_CONFINE_CHECKPOINT_GATES=false to run them unconfined"
        )
    home = Path.home()
    hide = (
        settings.workspace,
        *settings.hidden_paths,
        *([settings.git_home] if settings.git_home else []),
        *(home / name for name in _HOME_SECRETS),
    )
    own = git.pointed_git_dir(place / "tree")
    return confine.Confinement(
        hide=hide, expose=(place, *([own] if own else [])), read_only=(mirror,)
    ).wrap


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
    lease: Lease,
    *,
    settings: OrchestratorSettings,
    results: list[GateResult],
    error: str,
) -> None:
    async with sessionmaker() as db, db.begin():
        # The lock order of `graph.locking`: the session first (settling a session changes
        # its open final checkpoints under the session's lock).
        session_id = await db.scalar(select(Checkpoint.session_id).where(Checkpoint.id == lease.id))
        session = await lock_session(db, session_id) if session_id is not None else None
        checkpoint = await db.get(
            Checkpoint, lease.id, with_for_update=True, populate_existing=True
        )
        if checkpoint is None or checkpoint.status != "running" or checkpoint.runs != lease.runs:
            return  # another runner took it over after our lease ran out
        assert session is not None
        pushed: bool | None = None
        if session.status == SessionStatus.CANCELLED and not error:
            error = "the session was cancelled: nothing is tagged"
        rehearsing = session_settings(session).dry_run
        if rehearsing:  # a dry run moves no branch, makes no tag and pushes nothing
            checkpoint.target_branch = None
            checkpoint.tag = None
        elif not error:
            try:
                target = _push_target(session, settings) if session_settings(session).push else None
                pushed, push_error = await asyncio.to_thread(
                    _publish, settings.workspace / session.repo_path, checkpoint, target
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
        metrics.checkpoint_ended(
            db,
            result=checkpoint.status,
            seconds=_seconds(checkpoint.started_at, checkpoint.finished_at),
        )
        data: dict[str, Any] = {
            "number": checkpoint.number,
            "commit": checkpoint.commit,
            "gates": [{"name": r.name, "status": r.status} for r in results],
        }
        if error:
            data["error"] = error[:2000]
        elif rehearsing:
            data["dry_run"] = True
        else:
            data.update(tag=checkpoint.tag, target_branch=checkpoint.target_branch, pushed=pushed)
        if checkpoint.final:
            data["final"] = True
        timeline.record(
            db,
            session_id=session.id,
            type=f"checkpoint.{checkpoint.status}",
            actor=checkpoint.requested_by,
            data=data,
        )
        session_state.checkpoint_ended(db, session, checkpoint)
    log.info(
        "checkpoint finished",
        extra={"session_id": str(checkpoint.session_id), "status": checkpoint.status},
    )


def _seconds(start: datetime | None, end: datetime) -> float | None:
    return None if start is None else (end - start).total_seconds()


@dataclass(frozen=True)
class _Target:
    """Where a checkpoint is pushed: the session's repository as the policy accepts it
    today (or why it does not), and the environment git reaches it with."""

    url: str | None
    env: dict[str, str]
    refused: str = ""


def _push_target(session: Session, settings: OrchestratorSettings) -> _Target:
    """The session's repository, if a push may go there now. A push to a repository on this
    host runs that repository's hooks here, as the orchestrator's user: only a session of a
    token without a tenant (the operator's own repository) may push to one."""
    policy = RepoPolicy.from_settings(settings)
    try:
        source = policy.check(session.repo, tenant=session.tenant)
    except SwarmError as exc:
        return _Target(url=None, env={}, refused=f"not pushed: {exc.message}")
    if source.local and session.tenant is not None:
        return _Target(
            url=None,
            env={},
            refused="not pushed: a tenant's session pushes to remote repositories only "
            "(a local one would run its hooks in the orchestrator)",
        )
    return _Target(url=source.clone, env=policy.git_env())


def _publish(
    mirror: Path, checkpoint: Checkpoint, target: _Target | None
) -> tuple[bool | None, str]:
    """Fast-forward the target branch and tag the commit (both compare-and-swap); push them
    to the session's repository when asked (`target`, never the mirror's own remote, which
    its worktrees could rewrite). Returns whether the push happened and why not."""
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
    if target is None:
        return None, ""
    if target.url is None:
        return False, target.refused
    rewrites = git.git(
        "config",
        "--local",
        "--name-only",
        "--get-regexp",
        r"^url\.",
        git_dir=mirror,
        check=False,
    )
    if rewrites.stdout.strip():
        return False, "not pushed: the repository's config rewrites URLs (url.*.insteadOf)"
    proc = git.git(
        "push",
        "--quiet",
        "--porcelain",
        "--end-of-options",
        target.url,
        *refs,
        git_dir=mirror,
        env=target.env,
        check=False,
    )
    if proc.returncode != 0:
        return False, f"push to origin failed: {proc.stderr.strip()[:1500]}"
    return True, ""
