"""`GET /metrics`: Prometheus metrics (`observability`), in the text format or OpenMetrics as
the scraper's `Accept` asks.

The figures span every tenant, so a token with a tenant is refused (403
`global_token_required`); any token without one may read them (a viewer is enough), and so
may the metrics token (`SWARM_METRICS_TOKEN`), which opens nothing else (`api.security`).
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

from swarm_orchestrator.access.tokens import Forbidden
from swarm_orchestrator.api.deps import StateDep
from swarm_orchestrator.api.schemas import error_responses
from swarm_orchestrator.api.security import METRICS_PATH, Viewer
from swarm_orchestrator.observability.metrics import REGISTRY

router = APIRouter(tags=["metrics"])

_RESPONSES: dict[int | str, dict[str, object]] = {
    **error_responses(),
    200: {
        "description": "The metrics in Prometheus's text format (or OpenMetrics).",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    },
}


class _Scrape:
    """What one scrape serves: this process's counters and the figures read now."""

    def __init__(self, read: list[Metric]) -> None:
        self.read = read

    def collect(self) -> Iterable[Metric]:
        yield from REGISTRY.collect()
        yield from self.read


@router.get(METRICS_PATH, responses=_RESPONSES, response_class=Response)
async def metrics(request: Request, state: StateDep, who: Viewer) -> Response:
    """Every Swarm metric (see the README's "Metrics and request ids")."""
    if who.tenant is not None:
        raise Forbidden(
            "the metrics span every tenant: use a token without a tenant or the metrics token",
            code="global_token_required",
            details={"tenant": who.tenant},
        )
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    body = encode(_Scrape(await state.gauges.read()))
    return Response(body, media_type=content_type)
