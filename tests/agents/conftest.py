"""Fixtures for the agent adapter tests: a real stack (orchestrator + one adapter process of
the agent kind under test), the real CLI from npm, and a fake model server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.agents.clis import install
from tests.agents.fakeserver import FakeModelServer, Scenario
from tests.e2e.stack import Stack


@dataclass(frozen=True)
class AgentCase:
    agent: str
    key_env: str
    url_env: str
    url_suffix: str
    key_prefix: str


CASES = {
    "claude": AgentCase("claude", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "", "sk-ant-test-"),
    "codex": AgentCase("codex", "OPENAI_API_KEY", "OPENAI_BASE_URL", "/v1", "sk-test-"),
    "gemini": AgentCase("gemini", "GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL", "", "AIzaTest"),
}


@dataclass
class AgentStack:
    case: AgentCase
    stack: Stack
    server: FakeModelServer
    secret: str
    binary: Path

    def start_adapter(self, *, base_url: str | None = None) -> None:
        self.stack.start_adapter(
            f"{self.case.agent}-1",
            agent=self.case.agent,
            **{
                self.case.key_env: self.secret,
                self.case.url_env: base_url or self.server.url + self.case.url_suffix,
                f"SWARM_{self.case.agent.upper()}_PATH": str(self.binary),
                "SWARM_PROGRESS_INTERVAL_S": "0.2",
                "SWARM_KILL_GRACE_S": "2",
            },
        )

    def start_adapter_of(self, agent: str) -> None:
        """An adapter of another agent kind (`<agent>-1`), its real CLI talking to the same
        fake model server."""
        case = CASES[agent]
        self.stack.start_adapter(
            f"{agent}-1",
            agent=agent,
            **{
                case.key_env: f"{case.key_prefix}{uuid.uuid4().hex}",
                case.url_env: self.server.url + case.url_suffix,
                f"SWARM_{agent.upper()}_PATH": str(install(agent)),
            },
        )


@pytest.fixture
def agent_stack(request: pytest.FixtureRequest, stack: Stack) -> Iterator[AgentStack]:
    case = CASES[request.param]
    binary = install(case.agent)
    with FakeModelServer(Scenario()) as server:
        yield AgentStack(
            case=case,
            stack=stack,
            server=server,
            secret=f"{case.key_prefix}{uuid.uuid4().hex}{uuid.uuid4().hex}",
            binary=binary,
        )
        stack.stop()  # before the server goes, so no CLI waits on it
