"""Progress coalescing: a chatty agent makes at most one event per interval."""

from __future__ import annotations

import asyncio
from typing import Any

from swarm_adapter.progress import ProgressBatcher


async def test_a_flood_becomes_a_few_bounded_events() -> None:
    published: list[tuple[str, str, dict[str, Any]]] = []

    async def publish(kind: str, text: str, data: dict[str, Any]) -> None:
        published.append((kind, text, data))

    batcher = ProgressBatcher(publish, interval_s=0.05, max_items=5)
    batcher.start()
    for i in range(2000):
        batcher.add("tool_call", f"Bash step {i}", {"i": i})
        if i % 500 == 0:
            await asyncio.sleep(0.06)
    batcher.add("message", "all done")
    await batcher.stop()
    assert 2 <= len(published) <= 10
    assert all(len(data["items"]) <= 5 for _, _, data in published)
    total = sum(len(d["items"]) + d["dropped"] for _, _, d in published)
    assert total == 2001
    assert published[-1][1] == "all done"  # a batch with a message is summed up by it


async def test_nothing_is_published_when_nothing_happened() -> None:
    published: list[object] = []

    async def publish(kind: str, text: str, data: dict[str, Any]) -> None:
        published.append(kind)

    batcher = ProgressBatcher(publish, interval_s=0.01)
    batcher.start()
    await asyncio.sleep(0.05)
    await batcher.stop()
    assert published == []


async def test_large_observations_are_cut_to_a_preview() -> None:
    published: list[dict[str, Any]] = []

    async def publish(kind: str, text: str, data: dict[str, Any]) -> None:
        published.append(data)

    batcher = ProgressBatcher(publish, interval_s=10, max_data=1000)
    batcher.add("tool_call", "mcp", {"input": {"nested": ["x" * 50_000]}})
    batcher.add("tool_call", "small", {"input": {"a": 1}})
    batcher.start()
    await batcher.stop()
    [data] = published
    first, second = data["items"]
    assert first["data"]["truncated"] and len(first["data"]["preview"]) <= 250
    assert second["data"] == {"input": {"a": 1}}
