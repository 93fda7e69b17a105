"""Swarm adapter: consumes task messages, runs an agent in a worktree, reports events.

Where things live:

- `main`: the `swarm adapter` process: signals, the Redis client, the runner check.
  `probe`: `swarm adapter --check-health`, a container's health check (Redis, CLI).
- `worker`: `Adapter`, the transport and the lifecycle: slots reading the task stream,
  one entry from admission to acknowledgement, drain and emergency stop.
- `task_stream`: the Redis commands on `swarm:tasks:<agent>` (read, take over, touch, ack,
  dead-letter). `admission`: which entries this adapter runs.
- `reporting`: events out to `swarm:events` (redacted, retried, each proven with its
  attempt's secret key, which only it holds), cancel requests in.
- `upkeep`: the loops beside the slots: the system mode, the liveness key (with what the
  adapter announced: models, CLI version, capabilities; see `worker.Adapter.announcement`).
- `heartbeat`: beside each attempt: cancel checks, lease renewal and fencing.
  `lease_holder`: the claim and lease of each attempt, as `worker` and `heartbeat` use them.
- `watchdog`: which results are start failures (a broken agent CLI or workspace), and when
  an adapter whose attempts keep failing at start leaves rotation.
- `running`: one attempt in flight, shared by the three above and the pipeline below.
- `attempt`: the attempt pipeline, without Redis: setup, agent, commit, gates, result.
  `preparation` (merge in, setup files), `escape` and `escape_check` (writes outside the
  worktree), `outcome` (the result message), `answers` (the agent's final answer, for
  read-only and `output_schema` tasks), `worktree` (git worktrees and commits), `pool`
  (prepared worktrees reused per repository, cleaned and removed in the background),
  `progress` (batched progress events), `transcript` (what the agent said last, for a
  failed attempt's result), `prompts` and `runners/` (the agent CLIs),
  `handoff` (parents' handoffs and the blackboard in the prompt and `.swarm/context.json`;
  the agent's own handoff read from its final message).
- `settings`: `AdapterSettings`.
"""
