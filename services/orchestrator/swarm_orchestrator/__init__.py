"""Swarm's orchestrator: the REST API, the task graphs in PostgreSQL, and the loops that move
work between them and the adapters.

Where things live (behaviour → module):

- the task graph and its state — `graph/`
  - a task's status, merge status and attempts change *only* here, checked against the
    transition tables of `swarm_common.states` → `graph/task_state.py`
  - a session's status, when it is finished and how it settles (final checkpoint,
    `finalized` or `awaiting_review`), reopening, archiving → `graph/session_state.py`
  - whether and when a task runs again (one pure decision) → `graph/retry.py`
  - the lock order session → task → attempt → `graph/locking.py`
  - which tasks run next, and the task message they get → `graph/scheduler.py`
  - which agent kinds have live adapters, free slots, what they can do (the one place that
    says; mirrored from the adapters' liveness keys) → `graph/fleet.py`
  - which kind an `agent: auto` task runs on, and why → `graph/routing.py`
  - sessions suspended and resumed, `auto` tasks rerouted, as agent kinds go and come →
    `graph/suspension.py`
  - whether a task with `fallback` kinds moves to another kind (rate limited past the
    session's `failover.max_wait_s`, its kind paused or gone), and where → `graph/failover.py`
  - agent kinds paused for their provider's limits (N limits within a window) →
    `graph/pauses.py`
  - creating sessions and adding graphs; reads → `graph/sessions.py`
  - checking a submitted graph (keys, dependencies, cycles, sizes) → `graph/validation.py`
  - what an adapter's report does (started, progress, succeeded, failed) → `graph/reports.py`
  - whether a report comes from the adapter holding its attempt (proof, worker) →
    `graph/provenance.py`
  - a person's retry, cancel, approve, pause, resume, finish, archive → `graph/control.py`
  - cancelling a session: at once what could still start or merge, the rest in the
    background → `graph/cancelling.py`
  - done / total, time left, tokens and cost → `graph/progress.py`
  - what an attempt cost, priced once by the price table (`SWARM_PRICES` on top) when its
    result arrives → `graph/pricing.py`
  - tokens and cost summed by session, task, agent, persona, tenant or day →
    `graph/usage.py`
  - the persona catalogue (who a logical agent is: role, skills, preferred agents, style,
    commit identity), per tenant; generated populations → `graph/personas.py`
  - a succeeded task's handoff kept; the session blackboard of facts (writes, history,
    what a task being queued gets of its parents and the board) → `graph/blackboard.py`
  - follow-up tasks handoffs propose (`settings.delegation`: approve, auto, off; depth
    and cap; accepting and refusing) → `graph/delegation.py`
- from a goal to a graph — `planning/`
  - a draft's plan: planning (agent run or heuristic), numbered revisions, edits, the
    planning conversation, approval → `planning/plans.py`
  - what a planning agent is asked (the plan's JSON schema, its prompt) and how its answer
    is checked → `planning/answers.py`; a person's changes to a plan → `planning/edits.py`
  - the planner without a model, from the goal document's headings, phases and lists →
    `planning/heuristic.py`
  - the inventory of a tenant's repositories: scans checked by the repository policy,
    stored and listed; a session mirror's record for the planner → `planning/inventory.py`
- git integration — `integration/`
  - where a repository may come from (roots, tenants, schemes, hosts) →
    `integration/repo_policy.py`
  - a session's bare mirror, refs and diffs → `integration/repos.py`
  - the merge queue into the integration branch, conflicts → `integration/merges.py`
  - checkpoints (confined gates, fast-forward, tag, push; final ones settle their
    session) → `integration/checkpoints.py`
  - which checkpoints run at once, fair per tenant; cancel and stop →
    `integration/checkpoint_pool.py`
  - rollback to a checkpoint → `integration/rollback.py`
  - removing old worktrees and artifacts → `integration/prune.py`
- background runtime — `runtime/`
  - the loops every replica runs, and their lifecycle → `runtime/background.py`
  - publishing the outbox to Redis → `runtime/relay.py`
  - which held task message goes out next (free slots, fair shares of tenants and
    sessions, priority) → `runtime/dispatch.py`
  - reading adapters' events from Redis → `runtime/consumer.py`
  - lost attempts, Redis losing its data → `runtime/reaper.py`
  - the adapters' liveness keys mirrored into `workers`, then suspension → `runtime/registry.py`
  - drain, emergency stop, resume → `runtime/system_mode.py`
  - which failures are worth retrying → `runtime/failures.py`
- notifications — `webhooks/`: which timeline entries are events and their bodies
  (`events.py`), the signature (`signing.py`), which addresses a webhook may reach
  (`targets.py`), subscriptions (`subscriptions.py`), timeline → deliveries (`fanout.py`),
  sending with leases, back-off and per-receiver limits (`sender.py`)
- what operators watch — `observability/`: every Prometheus series and the small functions
  that count events once their transaction commits (`metrics.py`); the figures read from
  PostgreSQL and Redis when `/metrics` is scraped (`gauges.py`)
- persistence — `db/`: the schema (`models.py`), engine, migrations (`migrate.py`), the
  timeline (`timeline.py`), outbox rows (`outbox.py`), advisory locks (`advisory.py`),
  large inserts in batches (`bulk.py`)
- the REST API — `api/`: app, routes, schemas, authentication and redaction
  (`security.py`), the live event stream (`stream.py`, `live.py`), the `/docs` page and
  its Content-Security-Policy (`routes/docs.py`), request ids (`request_ids.py`), `/metrics`
  (`routes/metrics.py`), limits checked before a body is parsed
  (size, JSON depth, a graph's edges: `limits.py`), long task lists built off the event
  loop (`convert.py`)
- who may call it — `access/`: API tokens and roles (`tokens.py`), rate limits
  (`ratelimit.py`), the client address a budget is charged to, trusted proxies
  (`addresses.py`)
- `settings.py` (environment), `server.py` (`swarm server`), `errors.py` (service errors
  with stable codes), `dashboard/` (the web dashboard's static files)

The orchestrator imports `swarm_common`, never the adapter or the command line
(`tests/test_layering.py`).
"""
