"""Quality gates: the lint, test and build commands that judge an agent's work.

The adapter runs gates in a task's worktree once the agent has finished; the orchestrator
runs them on the integration branch at a checkpoint. Callers import from here; where things
live:

- `_model`: a session's gate settings (`GateConfig`), one gate of a plan (`GateCommand`),
  the outcome of one (`GateResult`).
- `_planning`: guessing the commands from a repository's files (`detect_gates`) and turning
  settings into a plan (`plan_gates`).
- `_running`: running a plan in a worktree, each gate's whole output to a log file, its tail
  in the result (`run_gates`).
- `_judging`: what results mean: whether they fail the attempt (`blocking_failures`), and
  the text that tells the agent's next attempt what went wrong (`feedback`).
"""

from swarm_common.gates._judging import blocking_failures, feedback
from swarm_common.gates._model import (
    GATE_NAMES,
    GateCommand,
    GateConfig,
    GateMode,
    GateName,
    GateResult,
    GateSource,
    GateStatus,
)
from swarm_common.gates._planning import detect_gates, plan_gates
from swarm_common.gates._running import refuse_gates, run_gates

__all__ = [
    "GATE_NAMES",
    "GateCommand",
    "GateConfig",
    "GateMode",
    "GateName",
    "GateResult",
    "GateSource",
    "GateStatus",
    "blocking_failures",
    "detect_gates",
    "feedback",
    "plan_gates",
    "refuse_gates",
    "run_gates",
]
