"""What the parts of `swarm_common.gates` share: the gate names, a session's gate settings
(`GateConfig`), one gate of a plan (`GateCommand`) and the outcome of one (`GateResult`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from swarm_common.specs import Text

GateName = Literal["lint", "test", "build"]
GATE_NAMES: tuple[GateName, ...] = ("lint", "test", "build")
"""Every gate there is, in the order they run."""

GateMode = Literal["strict", "permissive", "skip"]
GateSource = Literal["session", "detected"]
GateStatus = Literal["passed", "failed", "timeout", "skipped", "cancelled"]

MAX_TIMEOUT_S = 24 * 3600
DEFAULT_TIMEOUT_S = 600
FAILING: frozenset[str] = frozenset({"failed", "timeout"})
"""The statuses of a gate that failed."""

GateShellCommand = Annotated[Text, Field(max_length=4000)]
GateTimeout = Annotated[int, Field(ge=1, le=MAX_TIMEOUT_S)]


class GateConfig(BaseModel):
    """A session's `settings["gates"]`: which gates run, and whether a failing one fails the
    attempt (`strict`), is only reported (`permissive`), or no gate runs at all (`skip`)."""

    model_config = ConfigDict(extra="forbid")

    mode: GateMode = "strict"
    lint: GateShellCommand | None = Field(
        None, description="Run with bash; null detects it from the repository, '' means none."
    )
    test: GateShellCommand | None = Field(
        None, description="Run with bash; null detects it from the repository, '' means none."
    )
    build: GateShellCommand | None = Field(
        None, description="Run with bash; null detects it from the repository, '' means none."
    )
    detect: bool = Field(True, description="Fill the gates left null from the repository's files.")
    timeout_s: GateTimeout = Field(DEFAULT_TIMEOUT_S, description="Per gate.")
    timeouts: dict[GateName, GateTimeout] = Field(
        default_factory=dict, description="Per-gate overrides of `timeout_s`."
    )


@dataclass(frozen=True)
class GateCommand:
    """One gate of a plan."""

    name: str
    command: str
    """Run with `bash -c`."""
    source: GateSource
    tool: str | None
    """For a detected gate, the executable that must be on PATH; without it the gate is
    skipped, since nobody asked for it. None for a session's own command."""
    timeout_s: float


class GateResult(BaseModel):
    """The outcome of one gate; it travels in Redis events and is stored in JSONB, so every
    string in it is free of NUL."""

    name: str
    command: str
    source: str
    status: GateStatus
    exit_code: int | None = None
    duration_s: float = 0.0
    output_tail: str = ""
    log_path: str | None = None
    reason: str = ""
