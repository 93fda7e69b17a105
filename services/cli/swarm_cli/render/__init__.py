"""What the CLI shows. Every string from the server is escaped. Callers use this package's
names (`render.task_table`); each module owns one kind of view:

- `states`: the states, their colours and order (`state`, `STATE_STYLE`, `ENDED_STATES`).
- `formats`: the small formats the views share (ages, durations, token counts, costs).
- `sessions`: the sessions table, a session's panel, its progress bar and task counts.
- `tasks`: the tasks table, a task's panel, its attempts, gates and changed files.
- `events`: timeline entries as one-line markup, and the state each one moves a task to.
- `system`: the workers table, the system mode panel and the API tokens table.
"""

from __future__ import annotations

from swarm_cli.render.events import ATTEMPT_ENDS, event_lines, event_state, event_summary
from swarm_cli.render.formats import (
    ago,
    between,
    duration,
    failure,
    money,
    parse_time,
    tokens,
    usage_line,
)
from swarm_cli.render.sessions import (
    counts_line,
    progress_line,
    session_label,
    session_panel,
    session_state,
    session_table,
)
from swarm_cli.render.states import ENDED_STATES, STATE_ORDER, STATE_STYLE, state
from swarm_cli.render.system import system_panel, token_table, workers_table
from swarm_cli.render.tasks import (
    attempts_table,
    comments_table,
    diff_table,
    gates_table,
    reviews_table,
    task_panel,
    task_table,
)

__all__ = [
    "ATTEMPT_ENDS",
    "ENDED_STATES",
    "STATE_ORDER",
    "STATE_STYLE",
    "ago",
    "attempts_table",
    "between",
    "comments_table",
    "counts_line",
    "diff_table",
    "duration",
    "event_lines",
    "event_state",
    "event_summary",
    "failure",
    "gates_table",
    "money",
    "parse_time",
    "progress_line",
    "reviews_table",
    "session_label",
    "session_panel",
    "session_state",
    "session_table",
    "state",
    "system_panel",
    "task_panel",
    "task_table",
    "token_table",
    "tokens",
    "usage_line",
    "workers_table",
]
