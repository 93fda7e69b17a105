"""How `swarm workers` shows an adapter whose agent kind is paused for its provider's
limits (`kind_paused_until` in `GET /v1/workers`)."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from swarm_cli.render.system import workers_table


def _worker(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "agent": name.split("-")[0],
        "status": "online",
        "alive": True,
        "concurrency": 1,
        "running": [],
        "started_at": "2026-12-03T18:00:00Z",
        "last_seen_at": "2026-12-03T18:00:00Z",
        **extra,
    }


def test_a_paused_kind_shows_on_its_adapters() -> None:
    table = workers_table(
        [
            _worker("claude-1", kind_paused_until="2026-12-03T19:00:00Z"),
            _worker("codex-1", kind_paused_until=None),
        ]
    )
    console = Console(width=200, record=True)
    console.print(table)
    lines = {line.split()[1]: line for line in console.export_text().splitlines() if "-1 " in line}
    assert "kind paused until" in lines["claude-1"]
    assert "paused" not in lines["codex-1"]
