"""`/v1/templates`: the topologies a graph can be made from (`swarm_common.templates`), and
what one expands into, to look at and edit before submitting it (`POST /v1/sessions` takes
a `template` too, and stores the tasks it expands into)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from swarm_common.specs import TaskSpec
from swarm_common.templates import TEMPLATES, TemplateSpec, expand
from swarm_orchestrator.api.schemas import error_responses
from swarm_orchestrator.api.security import Viewer

router = APIRouter(prefix="/v1/templates", tags=["templates"])


class TemplatePublic(BaseModel):
    name: str
    description: str


class Expanded(BaseModel):
    goal: str
    tasks: list[TaskSpec]


@router.get("", responses=error_responses())
async def list_templates(who: Viewer) -> list[TemplatePublic]:
    """The topologies there are."""
    return [TemplatePublic(name=n, description=d) for n, d in TEMPLATES.items()]


@router.post("/expand", responses=error_responses())
async def expand_template(template: TemplateSpec, who: Viewer) -> Expanded:
    """The graph `template` stands for, as `POST /v1/sessions` would store it (nothing is
    stored): edit it and submit it as `tasks`."""
    return Expanded(goal=template.goal, tasks=expand(template))
