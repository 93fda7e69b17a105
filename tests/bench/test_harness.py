"""`tests.servers.forget_keys`, which the tests' `redis_prefix` fixture, the benchmarks'
harness and the Celery baseline call: what a run leaves in Redis is deleted after it, and
only that."""

from __future__ import annotations

import uuid

import redis as redis_client

from swarm_common.streams import Keys
from tests.servers import forget_keys


def test_a_runs_keys_are_deleted_and_no_one_elses(redis_url: str) -> None:
    store = redis_client.Redis.from_url(redis_url)
    mine, other = f"swarmbench-{uuid.uuid4().hex[:8]}", f"swarmbench-{uuid.uuid4().hex[:8]}"
    try:
        for i in range(2500):  # more than one page of SCAN and of UNLINK
            store.set(f"{mine}:claim:{i}", "1")
        store.xadd(f"{mine}:events", {"env": "{}"})
        store.set(f"{other}:claim:0", "1")
        store.set(mine, "the bare prefix is not one of its keys")
        assert forget_keys(store, Keys(mine).all_match) == 2501
        assert list(store.scan_iter(match=f"{mine}:*")) == []
        assert store.get(f"{other}:claim:0") == b"1" and store.get(mine) is not None
    finally:
        store.delete(f"{other}:claim:0", mine)
        store.close()
