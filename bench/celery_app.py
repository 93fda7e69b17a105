"""The Celery app of the baseline (`celery -A celery_app worker`, started by
`celery_baseline`): one no-op task on a Redis broker, every key of which carries a prefix of
its own (`BENCH_CELERY_PREFIX`), in a database number of its own (`BENCH_CELERY_BROKER`), so
that it never touches other data. No result backend: the task itself records that it ran,
in Redis, under the same prefix.

- `noop()`: `INCR <prefix>done` (counted, so completions are known for sure);
- `noop(enqueued_at)`: `RPUSH <prefix>delays <start - enqueued_at>` (seconds, the sender's
  and the worker's clocks being the same machine's).
"""

from __future__ import annotations

import os
import time

import redis
from celery import Celery  # type: ignore[import-untyped]

__all__ = ["DONE", "DELAYS", "NOOP", "make_app"]

NOOP = "bench.noop"
DONE = "done"
DELAYS = "delays"

_client: redis.Redis | None = None


def make_app(broker: str, prefix: str) -> Celery:
    app = Celery("swarm_bench", broker=broker, set_as_current=False)
    app.conf.update(
        broker_transport_options={"global_keyprefix": prefix},
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
    )
    return app


BROKER = os.environ.get("BENCH_CELERY_BROKER", "redis://127.0.0.1:6379/15")
PREFIX = os.environ.get("BENCH_CELERY_PREFIX", "swarmbench-celery:")
app = make_app(BROKER, PREFIX)


def _redis() -> redis.Redis:
    """One connection per worker process, made after the fork."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(BROKER)
    return _client


@app.task(name=NOOP)  # type: ignore[untyped-decorator]
def noop(enqueued_at: float | None = None) -> None:
    started = time.time()
    if enqueued_at is None:
        _redis().incr(PREFIX + DONE)
    else:
        _redis().rpush(PREFIX + DELAYS, started - enqueued_at)
