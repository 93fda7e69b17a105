"""Webhooks end to end: a real orchestrator process runs its webhook loops, a shell adapter
runs a session to its end, and a local receiver that was down when the session finished
gets its events once it is back — once per delivery id, signed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import init_repo
from tests.e2e.stack import Stack
from tests.waiting import eventually
from tests.webhook_receiver import Receiver


def test_a_receiver_that_was_down_gets_the_events_once_it_is_back(
    stack: Stack, tmp_path: Path
) -> None:
    repo = init_repo(tmp_path / "project")
    stack.start_orchestrator(
        SWARM_WEBHOOK_ALLOW_PRIVATE="true",  # the receiver is on 127.0.0.1
        SWARM_WEBHOOK_RETRY_BASE_S="0.2",  # retries come fast
        SWARM_WEBHOOK_RETRY_MAX_S="1",
        SWARM_WEBHOOK_INTERVAL_S="0.2",
    )
    stack.start_adapter("shell-a")
    receiver = Receiver()
    receiver.start()
    try:
        with stack.client() as client:
            made = client.post(
                "/v1/webhooks",
                json={"url": receiver.url, "events": ["session.finalized", "task.failed"]},
            )
            assert made.status_code == 201, made.text
            hook = made.json()
            receiver.secret = hook["secret"]
            receiver.stop()  # down while the session runs and ends
            tasks = [{"key": "ok", "prompt": "echo ok > ok.txt"}]
            created = client.post(
                "/v1/sessions",
                json={"title": "hooked", "repo": str(repo), "base_ref": "main", "tasks": tasks},
            )
            assert created.status_code == 201, created.text
            session_id = created.json()["id"]

            def deliveries() -> list[dict[str, Any]]:
                found: list[dict[str, Any]] = client.get(
                    f"/v1/webhooks/{hook['id']}/deliveries"
                ).json()
                return found

            def refused() -> dict[str, Any] | None:
                listed = deliveries()
                return listed[0] if listed and listed[0]["attempts"] >= 2 else None

            down = eventually(refused, timeout_s=90, message=lambda: stack.log("orchestrator"))
            assert down is not None
            assert down["type"] == "session.finalized" and down["status"] == "pending"
            assert down["last_error"]
            receiver.start()  # back, on its port

            def delivered() -> dict[str, Any] | None:
                listed = deliveries()
                return listed[0] if listed and listed[0]["status"] == "delivered" else None

            done = eventually(delivered, timeout_s=30, message=lambda: str(deliveries()))
            assert done is not None
    finally:
        receiver.stop()
    [hit] = receiver.got()  # task.failed: none failed
    assert hit.signed and hit.event == "session.finalized" and hit.delivery == done["id"]
    assert hit.body["session_id"] == session_id and hit.body["session_title"] == "hooked"
    assert hit.attempt == done["attempts"] >= 2
