"""Webhooks (`swarm_orchestrator.webhooks`) against a real HTTP receiver on 127.0.0.1: each
event a webhook asked for arrives once per delivery id, signed; a redelivery after a crash
carries the same id; a receiver that was down gets them once it is back; a slow one holds
up no other; deliveries are visible; the secret is shown once; private addresses are
refused unless allowed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text, update

from swarm_common.messages import TaskFailed
from swarm_orchestrator.api.deps import AppState
from swarm_orchestrator.db import timeline
from swarm_orchestrator.db.models import Webhook, WebhookDelivery
from swarm_orchestrator.graph.reports import Outcome
from swarm_orchestrator.settings import OrchestratorSettings
from swarm_orchestrator.webhooks import events, signing, targets
from swarm_orchestrator.webhooks.sender import Sender
from tests.orchestrator.helpers import (
    apply,
    mirror_commit,
    new_session,
    outcome_event,
    succeed_attempt,
    task,
    task_ids,
    tenant_client,
)
from tests.waiting import transactions_settled, wait_until, wait_until_async
from tests.webhook_receiver import Receiver, verify


@pytest.fixture
def settings(settings: OrchestratorSettings) -> OrchestratorSettings:
    """The receivers are on 127.0.0.1; retries come fast."""
    return settings.model_copy(
        update={
            "webhook_allow_private": True,
            "webhook_timeout_s": 1.0,
            "webhook_retry_base_s": 0.05,
            "webhook_retry_max_s": 0.2,
            "webhook_interval_s": 0.05,
        }
    )


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for receiver in made:
        receiver.release.set()
        receiver.stop()


@pytest.fixture
def receiver(receivers: list[Receiver]) -> Receiver:
    return _receiver(receivers)


def _receiver(receivers: list[Receiver], **options: Any) -> Receiver:
    made = Receiver(**options)
    made.start()
    receivers.append(made)
    return made


# -- helpers -------------------------------------------------------------------------------


async def subscribe(api: httpx.AsyncClient, receiver: Receiver, **body: Any) -> dict[str, Any]:
    response = await api.post("/v1/webhooks", json={"url": receiver.url, **body})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    receiver.secret = created["secret"]
    return created


async def fan_out(state: AppState) -> int:
    """Every entry written so far, fanned out (entries show once they settle)."""
    await transactions_settled(state.sessionmaker)
    made = 0
    while await state.background.webhooks_fan_out_once():
        made += 1
    return made


async def deliveries(api: httpx.AsyncClient, hook: dict[str, Any]) -> list[dict[str, Any]]:
    response = await api.get(f"/v1/webhooks/{hook['id']}/deliveries")
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


@contextlib.asynccontextmanager
async def sending(sender: Sender) -> AsyncIterator[None]:
    """The sender's loop, running as in a server."""
    stop = asyncio.Event()
    loop = asyncio.create_task(sender.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(loop, timeout=10)


async def record(state: AppState, session_id: str, type: str, **data: Any) -> None:
    """A timeline entry as its owner would write it (checkpoints, budgets and the fleet
    write theirs with `timeline.record` in their own transactions)."""
    async with state.sessionmaker() as db, db.begin():
        timeline.record(db, session_id=uuid.UUID(session_id), type=type, data=data)


# -- the tests -----------------------------------------------------------------------------


async def test_each_event_arrives_once_signed_and_only_those_asked_for(
    api: httpx.AsyncClient, state: AppState, git_repo: Path, workspace: Path, receiver: Receiver
) -> None:
    hook = await subscribe(api, receiver, events=["task.awaiting_approval", "task.failed"])
    session = await new_session(
        api,
        git_repo,
        [task("a", requires_approval=True), task("b"), task("c", max_attempts=3)],
    )
    sid = session["id"]
    ids = await task_ids(api, sid)
    keys, sm = state.keys, state.sessionmaker
    work = mirror_commit(workspace, session, {"a.txt": "a"})
    await succeed_attempt(sm, keys, sid, ids["a"], commit=work, changed_files=["a.txt"])
    for key in ("b", "c"):  # b fails for good; c will be retried: no event
        failed = outcome_event(TaskFailed, sid, ids[key], reason="exit_code", error="boom")
        assert await apply(sm, keys, failed) == Outcome.APPLIED
    await record(state, sid, "checkpoint.passed", number=1)  # not asked for

    await fan_out(state)
    assert await state.background.webhooks.send_once() == 2
    hits = receiver.got()
    assert sorted((h.event, h.body["task_key"]) for h in hits) == [
        ("task.awaiting_approval", "a"),
        ("task.failed", "b"),
    ]
    assert all(h.signed and h.attempt == 1 for h in hits)
    assert len({h.delivery for h in hits}) == 2
    for hit in hits:
        body = hit.body
        assert body["id"] == hit.delivery and body["type"] == hit.event
        assert body["session_id"] == sid and body["session_title"] == "test"
        assert body["task_id"] == str(ids[body["task_key"]])
    failed_body = next(h.body for h in hits if h.event == "task.failed")
    assert failed_body["data"]["will_retry"] is False and failed_body["data"]["error"] == "boom"

    # Once: another pass finds nothing new, and nothing is due again.
    await fan_out(state)
    assert await state.background.webhooks.send_once() == 0
    assert len(receiver.got()) == 2
    listed = await deliveries(api, hook)
    assert sorted(d["type"] for d in listed) == ["task.awaiting_approval", "task.failed"]
    for d in listed:
        assert (d["status"], d["attempts"], d["last_status"], d["last_error"]) == (
            "delivered",
            1,
            200,
            None,
        )
        assert d["delivered_at"] is not None and d["next_attempt_at"] is None
        assert d["id"] in {h.delivery for h in hits}


async def test_a_tenant_hears_of_its_own_sessions_and_a_session_webhook_of_that_one(
    api: httpx.AsyncClient, state: AppState, git_repo: Path, receivers: list[Receiver]
) -> None:
    acme_rx, globex_rx, one_rx, all_rx = (_receiver(receivers) for _ in range(4))
    acme = await tenant_client(api, "acme")
    globex = await tenant_client(api, "globex")
    async with acme, globex:
        mine = await new_session(acme, git_repo, [task("a")])
        theirs = await new_session(globex, git_repo, [task("a")])
        other = await new_session(acme, git_repo, [task("a")])
        await subscribe(acme, acme_rx, events=["checkpoint.failed"])
        await subscribe(globex, globex_rx, events=["checkpoint.failed"])
        await subscribe(acme, one_rx, events=["checkpoint.failed"], session_id=mine["id"])
        await subscribe(api, all_rx, events=["checkpoint.failed"])  # no tenant: every one
        # A tenant's token cannot subscribe to another tenant's session.
        refused = await globex.post(
            "/v1/webhooks", json={"url": one_rx.url, "session_id": mine["id"]}
        )
        assert (refused.status_code, refused.json()["code"]) == (404, "session_not_found")
        for session in (mine, theirs, other):
            await record(state, session["id"], "checkpoint.failed", number=1, error="tests")
        await fan_out(state)
        while await state.background.webhooks.send_once():
            pass

    def sessions(rx: Receiver) -> set[str]:
        return {h.body["session_id"] for h in rx.got()}

    assert sessions(acme_rx) == {mine["id"], other["id"]}
    assert sessions(globex_rx) == {theirs["id"]}
    assert sessions(one_rx) == {mine["id"]}
    assert sessions(all_rx) == {mine["id"], theirs["id"], other["id"]}
    assert {h.body["tenant"] for h in all_rx.got()} == {"acme", "globex"}


async def test_a_receiver_down_for_a_while_gets_them_once_it_is_back(
    api: httpx.AsyncClient, state: AppState, git_repo: Path, receiver: Receiver
) -> None:
    hook = await subscribe(api, receiver, events=["session.budget_warning"])
    receiver.stop()  # down
    session = await new_session(api, git_repo, [task("a")])
    await record(state, session["id"], "session.budget_warning", limit="session.usd", percent=80)
    await fan_out(state)
    sender = state.background.webhooks
    async with sending(sender):

        async def retried() -> dict[str, Any] | None:
            [d] = await deliveries(api, hook)
            return d if d["attempts"] >= 3 else None

        down = await wait_until_async(retried, message="attempts while the receiver is down")
        assert down is not None
        assert down["status"] == "pending" and down["last_status"] is None
        assert "ConnectError" in down["last_error"]
        receiver.start()  # back, on the same port
        await wait_until(receiver.got, message="the delivery after the receiver came back")

        async def delivered() -> dict[str, Any] | None:
            [d] = await deliveries(api, hook)
            return d if d["status"] == "delivered" else None

        done = await wait_until_async(delivered)
        assert done is not None
    [hit] = receiver.got()
    assert hit.signed and hit.delivery == done["id"] and hit.attempt == done["attempts"] >= 3
    assert done["last_error"] is None and done["last_status"] == 200


async def test_a_refusing_receiver_is_retried_until_the_attempts_run_out(
    api: httpx.AsyncClient, state: AppState, git_repo: Path, receivers: list[Receiver]
) -> None:
    receiver = _receiver(receivers, status=503)
    hook = await subscribe(api, receiver, events=["kind.lost"])
    session = await new_session(api, git_repo, [task("a")])
    await record(state, session["id"], "session.suspended", reason="no live claude", kinds=["x"])
    await fan_out(state)
    sender = Sender(
        sessionmaker=state.sessionmaker,
        settings=state.settings.model_copy(update={"webhook_max_attempts": 3}),
    )
    async with sending(sender):

        async def failed() -> dict[str, Any] | None:
            [d] = await deliveries(api, hook)
            return d if d["status"] == "failed" else None

        gave_up = await wait_until_async(failed)
        assert gave_up is not None
    assert (gave_up["attempts"], gave_up["last_status"]) == (3, 503)
    assert gave_up["last_error"] == "HTTP 503: ok" and gave_up["next_attempt_at"] is None
    hits = receiver.got()
    assert [h.attempt for h in hits] == [1, 2, 3] and len({h.delivery for h in hits}) == 1


async def test_a_redelivery_after_a_crash_carries_the_same_delivery_id(
    api: httpx.AsyncClient, state: AppState, git_repo: Path, receiver: Receiver
) -> None:
    hook = await subscribe(api, receiver, events=["session.finalized"])
    session = await new_session(api, git_repo, [task("a")])
    await record(state, session["id"], "session.finalized", tag="swarm/x")
    await fan_out(state)
    sender = state.background.webhooks
    [claimed] = await sender.claim(10)
    assert (await sender.attempt(claimed)).ok  # sent, and the process dies before recording
    assert await sender.claim(10) == []  # leased: nobody sends it meanwhile
    async with state.sessionmaker() as db, db.begin():  # ... until its lease ends
        await db.execute(
            update(WebhookDelivery).values(
                lease_until=func.now() - text("interval '1 second'"),
                next_attempt_at=func.now() - text("interval '1 second'"),
            )
        )
    assert await sender.send_once() == 1
    first, second = receiver.got()
    assert first.delivery == second.delivery == str(claimed.id)
    assert (first.attempt, second.attempt) == (1, 2)
    assert first.body == second.body  # the same event: the receiver drops the second
    [d] = await deliveries(api, hook)
    assert (d["status"], d["attempts"]) == ("delivered", 2)
    # The crashed attempt's late record is not the delivery's any more.
    assert await sender.record(claimed, await sender.attempt(claimed)) is False


async def test_a_slow_receiver_delays_no_other(
    api: httpx.AsyncClient, state: AppState, git_repo: Path, receivers: list[Receiver]
) -> None:
    slow = _receiver(receivers, slow=True)
    fast = _receiver(receivers)
    slow_hook = await subscribe(api, slow, events=["checkpoint.passed"])
    await subscribe(api, fast, events=["checkpoint.passed"])
    session = await new_session(api, git_repo, [task("a")])
    for number in range(1, 6):
        await record(state, session["id"], "checkpoint.passed", number=number)
    await fan_out(state)
    sender = Sender(
        sessionmaker=state.sessionmaker,
        settings=state.settings.model_copy(
            update={
                "webhook_concurrency": 2,
                "webhook_receiver_concurrency": 1,
                "webhook_timeout_s": 30.0,
            }
        ),
    )
    async with sending(sender):
        await wait_until(lambda: slow.holding == 1, message="the slow receiver holds one")
        # All five reach the fast receiver while the slow one holds its first request.
        await wait_until(lambda: len(fast.got()) == 5, message="the fast receiver's five")
        assert slow.holding == 1 and slow.got() == []
        slow.release.set()
        await wait_until(lambda: len(slow.got()) == 5, message="the slow receiver's five")
    assert sorted(h.body["data"]["number"] for h in fast.got()) == [1, 2, 3, 4, 5]
    assert len({h.delivery for h in slow.got()}) == 5
    assert all(d["status"] == "delivered" for d in await deliveries(api, slow_hook))


async def test_an_attempt_that_takes_too_long_is_cut_and_retried(
    api: httpx.AsyncClient, state: AppState, git_repo: Path, receivers: list[Receiver]
) -> None:
    slow = _receiver(receivers, slow=True)
    hook = await subscribe(api, slow, events=["checkpoint.passed"])
    session = await new_session(api, git_repo, [task("a")])
    await record(state, session["id"], "checkpoint.passed", number=1)
    await fan_out(state)
    started = time.monotonic()
    assert await state.background.webhooks.send_once() == 1  # webhook_timeout_s: 1
    assert time.monotonic() - started < 5
    [d] = await deliveries(api, hook)
    assert (d["status"], d["attempts"], d["last_error"]) == (
        "pending",
        1,
        "no answer within 1s",
    )


async def test_two_orchestrators_never_claim_the_same_delivery(
    api: httpx.AsyncClient, state: AppState, git_repo: Path, receiver: Receiver
) -> None:
    await subscribe(api, receiver, events=["checkpoint.passed"])
    session = await new_session(api, git_repo, [task("a")])
    for number in range(20):
        await record(state, session["id"], "checkpoint.passed", number=number)
    # Two fan-outs at once make one delivery per entry.
    await transactions_settled(state.sessionmaker)
    await asyncio.gather(*(state.background.webhooks_fan_out_once() for _ in range(2)))
    await fan_out(state)
    async with state.sessionmaker() as db:
        assert await db.scalar(select(func.count()).select_from(WebhookDelivery)) == 20
    wide = state.settings.model_copy(update={"webhook_receiver_concurrency": 20})
    one, two = (Sender(sessionmaker=state.sessionmaker, settings=wide) for _ in range(2))
    claimed: list[Any] = []
    for _ in range(20):
        a, b = await asyncio.gather(one.claim(3), two.claim(3))
        claimed += a + b
    ids = [c.id for c in claimed]
    assert len(ids) == len(set(ids)) == 20


async def test_the_secret_is_shown_once_and_never_logged(
    api: httpx.AsyncClient,
    state: AppState,
    git_repo: Path,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    given = "a-secret-of-our-own-" + uuid.uuid4().hex
    hook = await subscribe(api, receiver, events=["session.awaiting_review"], secret=given)
    assert hook["secret"] == given
    generated = await subscribe(api, receiver, events=["session.awaiting_review"])
    assert generated["secret"].startswith("whsec_") and len(generated["secret"]) > 40
    receiver.secret = given
    session = await new_session(api, git_repo, [task("a")])
    await record(state, session["id"], "session.awaiting_review", reason="conflict")
    await fan_out(state)
    assert await state.background.webhooks.send_once() == 2
    assert [h.signed for h in receiver.got()].count(True) == 1  # the other: another secret
    answers = [
        await api.get("/v1/webhooks"),
        await api.get(f"/v1/webhooks/{hook['id']}"),
        await api.get(f"/v1/webhooks/{hook['id']}/deliveries"),
        await api.post(f"/v1/webhooks/{hook['id']}/test"),
        await api.delete(f"/v1/webhooks/{generated['id']}"),
    ]
    for answer in answers:
        assert answer.status_code < 300, answer.text
        assert given not in answer.text and generated["secret"] not in answer.text
        assert "secret" not in answer.text
    assert given not in caplog.text and generated["secret"] not in caplog.text
    ours = "\n".join(
        r.getMessage() + repr(r.__dict__) for r in caplog.records if r.name.startswith("swarm")
    )
    assert receiver.url not in ours  # a URL may hold a token (Slack's do; httpx's own
    # request lines are held at WARNING by `swarm_common.logs`)
    assert "webhook delivered" in caplog.text  # the sender did log


@pytest.mark.parametrize(
    ("url", "status", "code"),
    [
        ("http://127.0.0.1:8000/x", 403, "webhook_url_not_allowed"),
        ("http://localhost/x", 403, "webhook_url_not_allowed"),
        ("http://api.localhost/x", 403, "webhook_url_not_allowed"),
        ("http://10.1.2.3/x", 403, "webhook_url_not_allowed"),
        ("http://169.254.169.254/latest/meta-data", 403, "webhook_url_not_allowed"),
        ("http://[::1]/x", 403, "webhook_url_not_allowed"),
        ("http://[::ffff:127.0.0.1]/x", 403, "webhook_url_not_allowed"),
        ("http://0.0.0.0/x", 403, "webhook_url_not_allowed"),
        ("ftp://hooks.example.com/x", 422, "invalid_webhook_url"),
        ("https://user:pw@hooks.example.com/x", 422, "invalid_webhook_url"),
        ("https://hooks.example.com:99999/x", 422, "invalid_webhook_url"),
        ("hooks.example.com/x", 422, "invalid_webhook_url"),
        ("https://hooks.example.com/a\x00b", 422, "invalid_webhook_url"),
    ],
)
async def test_private_addresses_are_refused_by_default(
    api: httpx.AsyncClient,
    state: AppState,
    monkeypatch: pytest.MonkeyPatch,
    url: str,
    status: int,
    code: str,
) -> None:
    monkeypatch.setattr(state.settings, "webhook_allow_private", False)
    response = await api.post("/v1/webhooks", json={"url": url})
    assert (response.status_code, response.json()["code"]) == (status, code), response.text
    fine = await api.post("/v1/webhooks", json={"url": "https://hooks.example.com/x"})
    assert fine.status_code == 201, fine.text


async def test_a_name_that_resolves_to_a_private_address_is_refused_when_sending(
    api: httpx.AsyncClient, state: AppState, git_repo: Path, receiver: Receiver
) -> None:
    """As if its DNS changed after the webhook was created: each attempt resolves again."""
    hook = await subscribe(api, receiver, events=["checkpoint.passed"])
    async with state.sessionmaker() as db, db.begin():
        await db.execute(update(Webhook).values(url=receiver.url.replace("127.0.0.1", "localhost")))
    session = await new_session(api, git_repo, [task("a")])
    await record(state, session["id"], "checkpoint.passed", number=1)
    await fan_out(state)
    strict = Sender(
        sessionmaker=state.sessionmaker,
        settings=state.settings.model_copy(update={"webhook_allow_private": False}),
    )
    assert await strict.send_once() == 1
    assert receiver.got() == []
    [d] = await deliveries(api, hook)
    assert d["status"] == "pending" and d["last_error"].startswith("refused: localhost")
    assert "non-public address" in d["last_error"]


async def test_a_public_name_is_pinned_to_the_address_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
        assert (host, port) == ("hooks.example.com", 8443)
        return [(2, 1, 6, "", ("93.184.215.14", port))]

    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    target = await targets.resolve("https://hooks.example.com:8443/a?b=1", allow_private=False)
    assert str(target.url) == "https://93.184.215.14:8443/a?b=1"
    assert target.headers == {"Host": "hooks.example.com:8443"}
    assert target.extensions == {"sni_hostname": "hooks.example.com"}


async def test_the_slack_format_posts_a_text(
    api: httpx.AsyncClient, state: AppState, git_repo: Path, receiver: Receiver
) -> None:
    await subscribe(api, receiver, events=["task.failed", "session.finalized"], format="slack")
    session = await new_session(api, git_repo, [task("build")], title="<!channel> & co")
    sid = session["id"]
    ids = await task_ids(api, sid)
    failed = outcome_event(TaskFailed, sid, ids["build"], reason="exit_code", error="exit 2")
    assert await apply(state.sessionmaker, state.keys, failed) == Outcome.APPLIED
    await fan_out(state)
    assert await state.background.webhooks.send_once() == 1
    [hit] = receiver.got()
    assert hit.signed and hit.event == "task.failed"
    assert hit.body == {
        "text": "Task `build` of *&lt;!channel&gt; &amp; co* failed for good (exit_code): exit 2"
    }


async def test_webhooks_are_listed_tested_and_removed(
    api: httpx.AsyncClient, state: AppState, git_repo: Path, receiver: Receiver
) -> None:
    acme = await tenant_client(api, "acme")
    viewer = await tenant_client(api, "acme", role="viewer", name="acme-viewer")
    async with acme, viewer:
        hook = await subscribe(acme, receiver)
        assert hook["events"] == sorted(events.EVENTS) and hook["format"] == "json"
        assert hook["tenant"] == "acme" and hook["created_by"] == "token:acme-operator"
        refused = await viewer.post("/v1/webhooks", json={"url": receiver.url})
        assert refused.status_code == 403  # viewers read
        assert [h["id"] for h in (await viewer.get("/v1/webhooks")).json()] == [hook["id"]]
        await subscribe(api, receiver)  # no tenant: not acme's to see
        receiver.secret = hook["secret"]
        assert len((await api.get("/v1/webhooks")).json()) == 2
        assert len((await viewer.get("/v1/webhooks")).json()) == 1
        tested = await acme.post(f"/v1/webhooks/{hook['id']}/test")
        assert tested.status_code == 202, tested.text
        assert tested.json()["type"] == "webhook.test" and tested.json()["status"] == "pending"
        assert await state.background.webhooks.send_once() == 1
        [hit] = receiver.got()
        assert hit.signed and hit.event == "webhook.test" and hit.delivery == tested.json()["id"]
        [seen] = (await viewer.get(f"/v1/webhooks/{hook['id']}/deliveries")).json()
        assert (seen["status"], seen["event_id"]) == ("delivered", None)
        only = await viewer.get(f"/v1/webhooks/{hook['id']}/deliveries?status=failed")
        assert only.json() == []
        gone = await acme.delete(f"/v1/webhooks/{hook['id']}")
        assert gone.status_code == 200 and gone.json()["id"] == hook["id"]
        missing = await viewer.get(f"/v1/webhooks/{hook['id']}")
        assert (missing.status_code, missing.json()["code"]) == (404, "webhook_not_found")
    async with state.sessionmaker() as db:
        assert await db.scalar(select(func.count()).select_from(WebhookDelivery)) == 0


async def test_entries_written_before_a_webhook_existed_are_not_sent(
    api: httpx.AsyncClient, state: AppState, git_repo: Path, receiver: Receiver
) -> None:
    session = await new_session(api, git_repo, [task("a")])
    await record(state, session["id"], "checkpoint.passed", number=1)
    await fan_out(state)  # nobody listens yet
    await subscribe(api, receiver, events=["checkpoint.passed"])
    await record(state, session["id"], "checkpoint.passed", number=2)
    await fan_out(state)
    assert await state.background.webhooks.send_once() == 1
    assert [h.body["data"]["number"] for h in receiver.got()] == [2]


def test_which_entries_are_events() -> None:
    assert events.notified("task.failed", {"will_retry": False}) == "task.failed"
    assert events.notified("task.failed", {"will_retry": True}) is None
    assert events.notified("session.suspended", {"kinds": ["claude"]}) == "kind.lost"
    assert (
        events.notified("session.suspended", {"reason": "budget_exhausted"})
        == "session.budget_exhausted"
    )
    assert events.notified("session.suspended", {"reason": "paused"}) is None
    assert events.notified("session.paused", {}) is None
    assert events.notified("checkpoint.requested", {}) is None
    for name in ("session.finalized", "checkpoint.failed", "session.budget_warning"):
        assert events.notified(name, {}) == name


def test_a_signature_verifies_only_with_its_secret_body_and_time() -> None:
    body = b'{"id":"x"}'
    header = signing.signature_header("s3cret-s3cret-s3cret", body, timestamp=1_700_000_000)
    assert signing.verify("s3cret-s3cret-s3cret", header, body, now=1_700_000_100)
    assert verify("s3cret-s3cret-s3cret", header, body, tolerance_s=10**10)  # the README's
    assert not signing.verify("another-secret-here", header, body, now=1_700_000_100)
    assert not signing.verify("s3cret-s3cret-s3cret", header, body + b" ", now=1_700_000_100)
    assert not signing.verify("s3cret-s3cret-s3cret", header, body, now=1_700_000_000 + 301)
    assert not signing.verify("s3cret-s3cret-s3cret", "v1=abc", body)
