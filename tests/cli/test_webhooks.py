"""`swarm webhooks` against a server: add one (the
secret alone on stdout), list it, send it a test delivery that a local receiver gets signed
with that secret, see the delivery, remove it."""

from __future__ import annotations

import json

from tests.e2e.stack import Stack
from tests.e2e.test_cli import ok, swarm
from tests.waiting import eventually
from tests.webhook_receiver import Receiver


def test_webhooks_are_added_tested_listed_and_removed(stack: Stack) -> None:
    stack.start_orchestrator(SWARM_WEBHOOK_ALLOW_PRIVATE="true", SWARM_WEBHOOK_INTERVAL_S="0.2")
    url = stack.api_url
    receiver = Receiver()
    receiver.start()
    try:
        added = swarm(
            "webhooks", "add", receiver.url, "-e", "task.failed", "--format", "slack", url=url
        )
        receiver.secret = ok(added).strip()
        assert receiver.secret.startswith("whsec_") and "not shown again" in added.stderr
        [hook] = json.loads(ok(swarm("webhooks", "--json", url=url)))
        assert (hook["events"], hook["format"]) == (["task.failed"], "slack")
        assert "secret" not in hook
        listed = ok(swarm("webhooks", url=url))
        assert hook["id"][:8] in listed and f"127.0.0.1:{receiver.port}" in listed
        refused = swarm("webhooks", "add", receiver.url, "-e", "task.done", url=url)
        assert refused.returncode != 0 and "unknown event" in refused.stderr

        ok(swarm("webhooks", "test", hook["id"][:6], url=url))
        [hit] = eventually(receiver.got, timeout_s=30, message="the test delivery")
        assert hit.signed and hit.event == "webhook.test"
        assert hit.body == {"text": "Swarm test delivery: the webhook works"}

        def delivered() -> str | None:
            shown = ok(swarm("webhooks", "deliveries", hook["id"], url=url))
            return shown if "delivered" in shown else None

        shown = eventually(delivered, timeout_s=30)
        assert shown is not None
        assert "webhook.test" in shown and hit.delivery[:8] in shown
        ok(swarm("webhooks", "rm", hook["id"][:8], url=url))
        assert json.loads(ok(swarm("webhooks", "list", "--json", url=url))) == []
    finally:
        receiver.stop()
