"""Probes: `/healthz` (the process answers) and `/readyz` (it can reach its servers)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from swarm_orchestrator.api.deps import StateDep

router = APIRouter(tags=["health"])

PROBE_TIMEOUT_S = 2.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "A server is unreachable."}})
async def readyz(state: StateDep) -> JSONResponse:
    checks: dict[str, Any] = {}
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S), state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any failure means "not ready"; the reason is reported
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            await state.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:  # as above
        checks["redis"] = f"error: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    if ready:
        return JSONResponse({"status": "ready", "checks": checks})
    return JSONResponse(
        {"code": "not_ready", "message": "a server is unreachable", "details": checks},
        status_code=503,
    )
