"""Checkpoints on a shared orchestrator (`integration/checkpoint_pool.py`): one tenant's gate
that does not end holds neither another tenant's checkpoint nor a second slot of its own;
cancelling its session, or stopping the system, kills the gate and tags nothing; no gate
runs longer than the orchestrator's cap, whatever the session asks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from swarm_common import git
from swarm_orchestrator.api.deps import AppState
from swarm_orchestrator.settings import OrchestratorSettings
from tests.conftest import init_repo
from tests.orchestrator.helpers import new_session, tenant_client
from tests.waiting import wait_until_async

Json = dict[str, Any]


def _gates(command: str, timeout_s: float = 3600) -> Json:
    return {"gates": {"detect": False, "mode": "strict", "test": command, "timeout_s": timeout_s}}


class Tenant:
    def __init__(self, client: httpx.AsyncClient, session: Json, workspace: Path) -> None:
        self.client, self.session = client, session
        self.mirror = workspace / "repos" / f"{session['id']}.git"

    @property
    def sid(self) -> str:
        return str(self.session["id"])

    async def checkpoint(self) -> int:
        made = await self.client.post(f"/v1/sessions/{self.sid}/checkpoints")
        assert made.status_code == 202, made.text
        return int(made.json()["number"])

    async def read(self, number: int) -> Json:
        got: Json = (await self.client.get(f"/v1/sessions/{self.sid}/checkpoints/{number}")).json()
        return got

    def tags(self) -> str:
        return git.git("tag", "--list", git_dir=self.mirror).stdout


@pytest.fixture
async def hold(tmp_path: Path) -> Path:
    """A gate that runs until this file exists (it never does unless a test makes it)."""
    return tmp_path / "release"


async def _tenant(
    api: httpx.AsyncClient, tmp_path: Path, workspace: Path, name: str, command: str
) -> Tenant:
    client = await tenant_client(api, name)
    session = await new_session(client, init_repo(tmp_path / name), settings=_gates(command))
    return Tenant(client, session, workspace)


async def test_one_tenants_endless_gate_holds_no_other_checkpoint_and_cancel_kills_it(
    api: httpx.AsyncClient, state: AppState, tmp_path: Path, workspace: Path, hold: Path
) -> None:
    pool = state.background.checkpoints
    endless = f"until [ -e {hold} ]; do sleep 0.05; done"
    acme = await _tenant(api, tmp_path, workspace, "acme", endless)
    globex = await _tenant(api, tmp_path, workspace, "globex", "true")
    first = await acme.checkpoint()
    [running] = await pool.fill()
    await wait_until_async(
        lambda: _status(acme, first, "running"), message="acme's checkpoint runs"
    )

    # Acme's second session waits (its tenant's one slot is taken) though a worker is free;
    # globex's checkpoint runs and passes while acme's gate still runs.
    acme_two = Tenant(
        acme.client,
        await new_session(acme.client, init_repo(tmp_path / "acme2"), settings=_gates("true")),
        workspace,
    )
    waiting = await acme_two.checkpoint()
    theirs = await globex.checkpoint()
    started = await pool.fill()
    assert len(started) == 1
    await started[0]
    assert (await globex.read(theirs))["status"] == "passed"
    assert (await acme_two.read(waiting))["status"] == "pending"
    assert not running.done()

    # Cancelling acme's session kills its gate; the checkpoint fails and tags nothing.
    assert (await acme.client.post(f"/v1/sessions/{acme.sid}/cancel")).status_code == 200
    await running
    ended = await acme.read(first)
    assert ended["status"] == "failed" and "cancel" in ended["error"], ended
    assert [g["status"] for g in ended["gates"]] == ["cancelled"]
    assert "checkpoint" not in acme.tags()
    assert not hold.exists()  # the gate was killed: nobody let it end

    # The slot is free again: acme's other session's checkpoint runs now.
    assert await state.background.checkpoints_once() == 1
    assert (await acme_two.read(waiting))["status"] == "passed"


async def _status(tenant: Tenant, number: int, status: str) -> bool:
    return bool((await tenant.read(number))["status"] == status)


async def test_stopping_the_system_kills_checkpoint_gates_and_leases_none_until_resumed(
    api: httpx.AsyncClient, state: AppState, tmp_path: Path, workspace: Path, hold: Path
) -> None:
    pool = state.background.checkpoints
    acme = await _tenant(
        api, tmp_path, workspace, "acme", f"until [ -e {hold} ]; do sleep 0.05; done"
    )
    first = await acme.checkpoint()
    [running] = await pool.fill()
    await wait_until_async(lambda: _status(acme, first, "running"))
    assert (await api.post("/v1/system/stop")).status_code == 200
    await running
    stopped = await acme.read(first)
    assert stopped["status"] == "failed" and "stopped" in stopped["error"], stopped
    assert "checkpoint" not in acme.tags()

    hold.touch()  # from now on the gate passes: only the system mode holds it
    second = await acme.checkpoint()
    assert await pool.fill() == []
    assert (await acme.read(second))["status"] == "pending"
    assert (await api.post("/v1/system/resume")).status_code == 200
    assert await state.background.checkpoints_once() == 1
    assert (await acme.read(second))["status"] == "passed"
    assert f"checkpoint-{second}" in acme.tags()


async def test_no_checkpoint_gate_runs_past_the_orchestrators_cap(
    api: httpx.AsyncClient,
    state: AppState,
    settings: OrchestratorSettings,
    tmp_path: Path,
    workspace: Path,
    hold: Path,
) -> None:
    settings.checkpoint_gate_max_s = 1.0
    acme = await _tenant(
        api, tmp_path, workspace, "acme", f"until [ -e {hold} ]; do sleep 0.05; done"
    )
    number = await acme.checkpoint()
    assert await state.background.checkpoints_once() == 1
    done = await acme.read(number)
    assert [(g["status"], g["reason"]) for g in done["gates"]] == [
        ("timeout", "timed out after 1s")
    ]


async def test_a_checkpoint_gate_log_is_redacted_and_private(
    api: httpx.AsyncClient, state: AppState, tmp_path: Path, workspace: Path
) -> None:
    """A gate that prints one of the orchestrator's secrets (here the bootstrap token;
    the finding was the database password) leaves it in no log, tail or answer, and its
    log is readable by Swarm's user only."""
    secret = state.settings.bootstrap_token()
    assert secret
    acme = await _tenant(api, tmp_path, workspace, "acme", f"echo leaked={secret}")
    number = await acme.checkpoint()
    assert await state.background.checkpoints_once() == 1
    [gate] = (await acme.read(number))["gates"]
    log = workspace / gate["log_path"]
    assert "leaked=[REDACTED]" in log.read_text() and secret not in log.read_text()
    assert secret not in gate["output_tail"]
    assert log.stat().st_mode & 0o777 == 0o600 and log.parent.stat().st_mode & 0o777 == 0o700


async def test_an_orchestrator_that_stops_gives_its_checkpoints_back_at_once(
    api: httpx.AsyncClient, state: AppState, tmp_path: Path, workspace: Path, hold: Path
) -> None:
    """A deploy does not hold a tenant's checkpoints for the lease's length: a stopping
    orchestrator kills its gates and leaves their checkpoints pending for any other."""
    pool = state.background.checkpoints
    endless = f"until [ -e {hold} ]; do sleep 0.05; done"
    acme = await _tenant(api, tmp_path, workspace, "acme", endless)
    number = await acme.checkpoint()
    [running] = await pool.fill()
    await wait_until_async(lambda: _status(acme, number, "running"))
    await pool.stop()
    assert running.done()
    assert (await acme.read(number))["status"] == "pending"
    assert await pool.fill() == []  # a stopped pool leases nothing more
