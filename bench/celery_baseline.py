"""The Celery baseline, run in the same invocation as Swarm's benchmarks: Celery 5 with a
Redis broker (the test Redis, database 15, every key under a prefix of its own, deleted
afterwards), a no-op task (`celery_app`), and a worker `celery -A celery_app worker --pool
prefork -c 2` started and stopped here. Celery's defaults otherwise (early acknowledgement,
prefetch multiplier 4), no result backend.

- `tasks_per_s`: 20,000 no-op tasks sent at once (one `send_task` each, from one
  producer); from the first send until the worker's 20,000th `INCR` of a Redis counter is
  seen (polled every 5 ms). `send_s`: how long sending them took (part of the above: the
  worker runs them meanwhile), for orientation. `cpu_s_per_task`: CPU seconds the worker
  (its pool included), Redis and this producer spent meanwhile, per task (`bench/cpu.py`);
  `cpu_<group>_s_per_task` for each.
- `enqueue_to_start_p99_s`: tasks sent at a steady 200/s (10 every 50 ms, 15 s), each
  carrying the time it was sent; the task pushes `time.time() - sent` when it starts; the
  99th percentile of those.

    .venv/bin/python bench/celery_baseline.py [--quick]
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cpu  # noqa: E402
from celery_app import DELAYS, DONE, NOOP, make_app  # noqa: E402
from stats import percentile  # noqa: E402
from tests.servers import Servers, forget_keys  # noqa: E402
from tests.waiting import eventually  # noqa: E402

__all__ = ["once"]

HERE = Path(__file__).resolve().parent
DATABASE = 15
TASKS, QUICK_TASKS = 20_000, 2_000
RATE_PER_S, BATCH = 200, 10
STEADY_S, QUICK_STEADY_S = 15.0, 4.0


def once(quick: bool = False) -> dict[str, float]:
    servers = Servers()
    try:
        broker = _database(servers.redis_url, DATABASE)
        prefix = f"swarmbench-celery-{uuid.uuid4().hex[:8]}:"
        store = redis.Redis.from_url(broker)
        try:
            with (
                tempfile.TemporaryDirectory(prefix="swarm-celery-") as tmp,
                _worker(broker, prefix, Path(tmp) / "worker.log", store) as worker,
            ):
                app = make_app(broker, prefix)
                count = QUICK_TASKS if quick else TASKS
                meter = cpu.Meter(groups={"worker": [worker.pid]}, redis=store)
                meter.start()
                rate, send_s = _throughput(app, store, prefix, count)
                spent = meter.stop()
                p99 = _latency(app, store, prefix, QUICK_STEADY_S if quick else STEADY_S)
        finally:
            forget_keys(store, f"{prefix}*")  # what the broker and the task wrote
            store.close()
    finally:
        servers.close()
    return {
        "tasks_per_s": rate,
        "enqueue_to_start_p99_s": p99,
        "send_s": send_s,
        **cpu.per_task(spent, count),
    }


def _database(url: str, number: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{number}"))


@contextmanager
def _worker(
    broker: str, prefix: str, log: Path, store: redis.Redis
) -> Iterator[subprocess.Popen[bytes]]:
    """A prefork worker of two processes, ready (it ran a first task) until the block ends;
    then a warm shutdown (SIGTERM), a kill if it hangs."""
    env = {
        **os.environ,
        "BENCH_CELERY_BROKER": broker,
        "BENCH_CELERY_PREFIX": prefix,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "celery", "-A", "celery_app", "worker"]
    command += ["--pool", "prefork", "-c", "2", "--loglevel", "WARNING"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            command,
            cwd=HERE,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        make_app(broker, prefix).send_task(NOOP)

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"celery worker exited: {log.read_text()[-2000:]}")
            return store.get(prefix + DONE) == b"1"

        eventually(ready, timeout_s=60, interval_s=0.05, message="celery worker not ready")
        store.delete(prefix + DONE)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _throughput(app: object, store: redis.Redis, prefix: str, count: int) -> tuple[float, float]:
    """Tasks per second, and the seconds sending them took."""
    send = app.send_task  # type: ignore[attr-defined]
    started = time.perf_counter()
    with app.producer_or_acquire() as producer:  # type: ignore[attr-defined]
        for _ in range(count):
            send(NOOP, producer=producer)
    sent = time.perf_counter() - started
    deadline = time.monotonic() + 600
    while int(store.get(prefix + DONE) or 0) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"celery ran {store.get(prefix + DONE)!r} of {count} tasks")
        time.sleep(0.005)
    return count / (time.perf_counter() - started), sent


def _latency(app: object, store: redis.Redis, prefix: str, seconds: float) -> float:
    send = app.send_task  # type: ignore[attr-defined]
    batches = int(seconds * RATE_PER_S / BATCH)
    interval = BATCH / RATE_PER_S
    began = time.monotonic()
    with app.producer_or_acquire() as producer:  # type: ignore[attr-defined]
        for k in range(batches):
            pause = began + k * interval - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            for _ in range(BATCH):
                send(NOOP, args=[time.time()], producer=producer)
    total = batches * BATCH
    eventually(
        lambda: store.llen(prefix + DELAYS) >= total,
        timeout_s=120,
        interval_s=0.05,
        message="celery latency tasks not all started",
    )
    delays = [float(v) for v in store.lrange(prefix + DELAYS, 0, -1)]
    return percentile(delays, 99)


if __name__ == "__main__":
    sys.stdout.write(json.dumps(once(quick="--quick" in sys.argv)) + "\n")
