"""Progress of a running agent, coalesced: whatever the agent does between two flushes
becomes one `task.progress` event, so a chatty agent cannot flood Redis or the timeline.

The runner calls `add()` for every observation (a message, a tool call, a file change); a
background loop flushes at most every `interval_s`, keeping the first `max_items` of a
batch and counting the rest."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["ProgressBatcher"]

log = logging.getLogger(__name__)

Publish = Callable[[str, str, dict[str, Any]], Awaitable[None]]


class ProgressBatcher:
    def __init__(
        self,
        publish: Publish,
        *,
        interval_s: float = 1.0,
        max_items: int = 20,
        max_text: int = 1000,
        max_data: int = 4000,
    ) -> None:
        self._publish = publish
        self._interval = interval_s
        self._max_items = max_items
        self._max_text = max_text
        self._max_data = max_data
        self._closing = asyncio.Event()
        self._items: list[dict[str, Any]] = []
        self._dropped = 0
        self._counts: dict[str, int] = {}
        self._message: str | None = None
        self._task: asyncio.Task[None] | None = None
        self.published = 0

    def add(self, kind: str, text: str = "", data: dict[str, Any] | None = None) -> None:
        """Record one observation (cheap, never blocks). The newest agent message always
        survives, as the batch's summary, however full the batch is."""
        self._counts[kind] = self._counts.get(kind, 0) + 1
        if kind == "message" and text:
            self._message = text[: self._max_text]
        if len(self._items) >= self._max_items:
            self._dropped += 1
            return
        item: dict[str, Any] = {"kind": kind, "text": text[: self._max_text]}
        if data:
            item["data"] = _bounded(data, self._max_data)
        self._items.append(item)

    async def flush(self) -> None:
        if not self._items and not self._dropped:
            return
        items, dropped, counts = self._items, self._dropped, self._counts
        message, self._message = self._message, None
        self._items, self._dropped, self._counts = [], 0, {}
        summary = message[:300] if message else _summary(counts)
        try:
            await self._publish(
                "activity", summary, {"items": items, "counts": counts, "dropped": dropped}
            )
            self.published += 1
        except Exception:
            log.exception("progress not published")

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="progress")

    async def stop(self) -> None:
        """Stop the loop (letting a publish in flight finish) and publish what is left."""
        self._closing.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self.flush()

    async def _loop(self) -> None:
        while not self._closing.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), timeout=self._interval)
            await self.flush()


def _bounded(data: dict[str, Any], limit: int) -> dict[str, Any]:
    """`data`, or a preview of it when its JSON is longer than `limit`."""
    text = json.dumps(data, default=str)
    if len(text) <= limit:
        return data
    return {"truncated": True, "preview": text[: limit // 4]}


def _summary(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
