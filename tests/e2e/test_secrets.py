"""Secret hygiene end to end: after a run whose agents and gates print credentials (a
well-known key format made at run time, the configured secrets they can reach), none of it
is found in any log, in the events stored in PostgreSQL or carried by Redis, in the
transcripts and artifacts of the workspace, or in API responses."""

from __future__ import annotations

from pathlib import Path

from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from swarm_common.settings import normalize_database_url
from tests.e2e.stack import TEST_TOKEN, Stack
from tests.waiting import wait_until

CONFIGURED = "hunter2-configured-password-7391"
"""A secret only in the processes' environment (`*_PASSWORD`): they must never show it."""

# A well-known key format (Anthropic's), assembled by the shell so that no submitted text
# holds it (that would be refused at submission).
MAKE_KEY = "printf 'sk-ant-api03-%s\\n' \"$(printf 'Zq9x%.0s' 1 2 3 4 5 6 7 8 9 10)\""
KEY = "sk-ant-api03-" + "Zq9x" * 10


def _scan(blob: bytes, where: str, found: list[str]) -> None:
    for secret in (KEY, CONFIGURED, TEST_TOKEN):
        if secret.encode() in blob:
            found.append(f"{secret[:12]}… in {where}")


async def test_no_secret_is_found_anywhere_after_a_run(
    stack: Stack, git_repo: Path, database_url: str, redis_url: str
) -> None:
    secret_env = {"SWARM_TEST_DB_PASSWORD": CONFIGURED}
    stack.start_orchestrator(**secret_env)
    stack.start_adapter("shell-secrets", **secret_env)
    graph = [
        # An agent printing a key, its environment, and trying to reach the configured ones.
        {
            "key": "prints",
            "prompt": f'{MAKE_KEY}; env; echo "db=$SWARM_TEST_DB_PASSWORD"; '
            f"{MAKE_KEY} > leaked.txt; echo done",
        },
        # One failing with the key in its error output.
        {"key": "fails", "prompt": f"{MAKE_KEY} >&2; exit 3"},
    ]
    settings = {
        "gates": {"lint": f"{MAKE_KEY}; true", "test": None, "build": None, "detect": False}
    }
    with stack.client() as api:
        created = api.post(
            "/v1/sessions",
            json={"title": "secrets", "repo": str(git_repo), "tasks": graph, "settings": settings},
        )
        assert created.status_code == 201, created.text
        sid = created.json()["id"]

        def ended() -> bool:
            tasks = api.get(f"/v1/sessions/{sid}/tasks").json()
            return all(t["status"] in ("succeeded", "failed") for t in tasks)

        await wait_until(ended, timeout_s=60, interval_s=0.2, message="both tasks to end")
        tasks = {t["key"]: t for t in api.get(f"/v1/sessions/{sid}/tasks").json()}
        assert tasks["prints"]["status"] == "succeeded" and tasks["fails"]["status"] == "failed"
        found: list[str] = []
        for t in tasks.values():
            for path in (f"/v1/tasks/{t['id']}", f"/v1/tasks/{t['id']}/events"):
                _scan(api.get(path).content, f"GET {path}", found)
        _scan(api.get(f"/v1/sessions/{sid}/events").content, "session events", found)
        diff = api.get(f"/v1/tasks/{tasks['prints']['id']}/diff", params={"format": "patch"})
        assert diff.status_code == 200 and "leaked.txt" in diff.text
        # Not vacuous: the key did flow, and was replaced on its way.
        assert "[REDACTED]" in diff.text
        assert "[REDACTED]" in api.get(f"/v1/tasks/{tasks['fails']['id']}").text
        _scan(diff.content, "the diff", found)
    stack.stop()

    for path in stack.logs.rglob("*"):
        if path.is_file():
            _scan(path.read_bytes(), f"log {path.name}", found)
    for path in stack.workspace.rglob("*"):
        if path.is_file() and not path.is_symlink() and "/objects/" not in str(path):
            _scan(path.read_bytes(), f"workspace {path.relative_to(stack.workspace)}", found)
    found.extend(await _stored(database_url, redis_url, stack.redis_prefix))
    assert not found, found


async def _stored(database_url: str, redis_url: str, prefix: str) -> list[str]:
    found: list[str] = []
    engine = create_async_engine(normalize_database_url(database_url))
    try:
        async with engine.connect() as conn:
            for table in ("events", "attempts", "tasks", "outbox", "sessions"):
                rows = await conn.execute(text(f"SELECT row_to_json(t)::text FROM {table} t"))
                for (row,) in rows:
                    _scan(row.encode(), f"table {table}", found)
    finally:
        await engine.dispose()
    redis = Redis.from_url(redis_url)
    try:
        async for key in redis.scan_iter(match=f"{prefix}:*"):
            kind = (await redis.type(key)).decode()
            if kind == "stream":
                for _, fields in await redis.xrange(key):
                    _scan(b" ".join(fields.values()), f"stream {key.decode()}", found)
            elif kind == "string":
                _scan(await redis.get(key) or b"", f"key {key.decode()}", found)
    finally:
        await redis.aclose()
    return found
