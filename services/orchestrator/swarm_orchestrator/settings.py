"""Settings of the orchestrator process (`SWARM_*` environment variables)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from swarm_common.prices import Price, PriceTable, parse_prices
from swarm_common.settings import CommonSettings

__all__ = ["REPO_SCHEMES", "OrchestratorSettings", "get_settings", "split_setting"]

REPO_SCHEMES = frozenset({"https", "ssh", "git", "http", "file"})
"""The git transports a session's repository may use (`SWARM_REPO_SCHEMES` picks)."""


class OrchestratorSettings(CommonSettings):
    host: str = "127.0.0.1"
    port: int = 8000
    api_token: SecretStr | None = None
    """Accepted as an admin token named `bootstrap` (besides the tokens in the database),
    so a deployment can create its first tokens; leave it unset once it has."""
    metrics_token: SecretStr | None = None
    """`SWARM_METRICS_TOKEN`: a bearer token that opens `GET /metrics` and nothing else, for
    a Prometheus scraper (an API token without a tenant opens it too). Unset: only API
    tokens do."""
    rate_limit_per_s: float = Field(20.0, ge=0)
    """Requests per second one token (or one address without a valid token) may make on
    average; 0 turns the limit off."""
    rate_limit_burst: int = Field(200, ge=1)
    """Requests one token may make at once before the average applies."""
    stream_token_check_s: float = Field(30.0, gt=0)
    """How often an open event stream checks that its token is still valid (a revoked
    token's stream ends within this time)."""
    trusted_proxies: str = ""
    """Reverse proxies whose `X-Forwarded-For` is believed, as addresses or CIDR networks
    separated by commas (`10.0.0.0/8,127.0.0.1`): behind them, the client they name is the
    one whose address budget a request spends. Empty (the default): the connection's own
    address, whatever a request's headers say."""

    run_loops: bool = True
    """Run the relay, event consumer and scheduler sweep in this process."""
    consumer_name: str = Field(default_factory=lambda: f"orch-{socket.gethostname()}-{os.getpid()}")
    relay_batch: int = 200
    relay_poll_interval_s: float = 0.5
    dispatch_headroom: int = Field(1, ge=0, le=1000)
    """Task messages each agent stream may hold beyond its live adapters' free slots, so a
    slot that frees finds the next one at once; the others wait in PostgreSQL in fair-share
    and priority order (`runtime.dispatch`). A task that becomes ready starts within
    `dispatch_headroom + 1` starts of its kind."""
    tenant_weights: Annotated[dict[str, int], NoDecode] = {}
    """`SWARM_TENANT_WEIGHTS` (`acme=2,beta=1`, or JSON): each tenant's share of every agent
    kind's slots against the other tenants' (weighted round robin); tenants left out, and
    sessions of no tenant, weigh 1."""
    consumer_batch: int = 500
    consumer_block_ms: int = 1000
    consumer_claim_idle_ms: int = 60_000
    """Events pending this long on a vanished orchestrator are taken over."""
    event_max_deliveries: int = 10
    """An event that failed to apply this many times is dead-lettered."""
    sweep_interval_s: float = 5.0
    reaper_interval_s: float = 2.0
    """How often attempts are checked for expired leases (the adapters' `SWARM_LEASE_S`
    sets how long a silent worker keeps its attempt)."""
    max_lost_attempts: int = 5
    """Lost attempts of one task before it fails."""
    registry_interval_s: float = Field(2.0, gt=0)
    """How often the adapters' liveness keys are mirrored into the `workers` table (and
    sessions suspended or resumed as their agent kinds go and come)."""
    suspend_grace_s: float = Field(60.0, ge=0)
    """How long an agent kind may have no live adapter before a session whose queued tasks
    name it is suspended (and `auto` tasks queued on it are routed elsewhere)."""
    failover_pause_after: int = Field(3, ge=0)
    """Rate-limited (or out-of-quota) attempts of one agent kind within `failover_window_s`
    that pause the kind until its reported reset: no task goes to it, and tasks with
    `fallback` kinds move on (`graph.pauses`). 0 never pauses a kind."""
    failover_window_s: float = Field(600.0, gt=0)
    failover_pause_s: float = Field(600.0, gt=0)
    """How long a kind is paused when none of its limits said when they reset."""
    agent_prices: dict[str, float] = {}
    """`SWARM_AGENT_PRICES`, JSON (`{"claude": 3, "codex": 2, "gemini": 1.5}`): the relative
    cost of a task on each agent kind, the last tie-breaker of `agent: auto` routing; kinds
    left out keep `graph.routing.PRICES`."""
    prices: str = ""
    """`SWARM_PRICES`, JSON (`{"claude-sonnet-4-5": {"input": 3, "cached_input": 0.3,
    "output": 15}}`, US dollars per million tokens): prices that replace or extend the
    built-in table (`swarm_common.prices`) every attempt's cost is priced by; a model is
    priced by the longest entry its name begins with. Checked at start."""
    prune_interval_s: float = 300.0
    """How often leftover worktrees of ended attempts are removed."""
    stream_maxlen: int = 1_000_000
    outbox_retention_s: float = 24 * 3600

    local_repo_roots: Annotated[list[Path], NoDecode] = []
    """Folders whose git repositories a session's `repo` may name (a local path, or a
    `file://` URL when `file` is among `repo_schemes`), checked after symlinks and `..` are
    resolved; `:`-separated or a JSON list. Empty (the default of a server): local
    repositories are refused. `swarm up` allows the folder it runs in."""
    tenant_repo_roots: dict[str, list[Path]] = {}
    """Each tenant's own folders, as JSON (`{"acme": ["/srv/acme"]}`): a tenant's token may
    name repositories under these only (and under `local_repo_roots` when
    `tenants_use_local_roots`)."""
    tenants_use_local_roots: bool = False
    """Whether tenants' tokens may also use `local_repo_roots` (tokens without a tenant
    always may)."""
    repo_schemes: Annotated[list[str], NoDecode] = ["https", "ssh"]
    """URL schemes a remote `repo` may use, of `https ssh git http file` (comma-separated);
    `user@host:path` counts as ssh."""
    repo_hosts: Annotated[list[str], NoDecode] = []
    """Hosts a remote `repo` may be on (`github.com`, `*.example.com`; comma-separated);
    empty allows any host."""
    git_home: Path | None = None
    """HOME of the orchestrator's clones and pushes: its `.gitconfig` (a credential helper
    meant for Swarm) and `.ssh/id_ed25519`, `.ssh/config`, `.ssh/known_hosts` are the only
    ones they use. Unset: an empty folder, so the credentials of the user running Swarm
    serve no repository a session names."""
    hidden_paths: Annotated[list[Path], NoDecode] = []
    """Folders that checkpoint gates must not see, besides the workspace (`swarm up` names
    its data folder: database and Valkey passwords, the admin token)."""
    checkpoint_workers: int = Field(2, ge=1)
    """Checkpoints one orchestrator runs at once."""
    checkpoint_tenant_slots: int = Field(1, ge=1)
    """Checkpoints one tenant may run at once (across every orchestrator), so one tenant's
    slow gates never hold another's."""
    checkpoint_gate_max_s: float = Field(1800.0, gt=0)
    """Longest a checkpoint gate may run, whatever its session's settings ask."""
    confine_checkpoint_gates: bool = True
    """Run checkpoint gates in a user, mount and PID namespace of their own that hides the
    workspace (but their own checkout), `hidden_paths` and the orchestrator's processes;
    where the kernel allows no such namespace the checkpoint fails and says so. `false`
    runs them unconfined (a single trusted user)."""
    webhook_allow_private: bool = False
    """Whether webhooks may be sent to loopback, private, link-local and other non-public
    addresses (checked when a webhook is created and again, on the resolved addresses, at
    every attempt). `swarm up` allows them: one machine, one user."""
    webhook_timeout_s: float = Field(10.0, gt=0, le=300)
    """Longest one webhook attempt may take, connection to answer."""
    webhook_concurrency: int = Field(16, ge=1, le=1000)
    """Webhook attempts one orchestrator makes at once."""
    webhook_receiver_concurrency: int = Field(2, ge=1, le=100)
    """Attempts to one webhook at once (across every orchestrator), so a slow or dead
    receiver holds at most this many of the `webhook_concurrency` slots."""
    webhook_max_attempts: int = Field(20, ge=1, le=100)
    """Attempts of one delivery before it is `failed`; the waits between them back off from
    `webhook_retry_base_s` to `webhook_retry_max_s` (20 attempts: about 2.5 hours)."""
    webhook_retry_base_s: float = Field(5.0, gt=0)
    webhook_retry_max_s: float = Field(600.0, gt=0)
    webhook_interval_s: float = Field(1.0, gt=0)
    """How often new timeline entries are fanned out to webhooks, and due deliveries
    looked for."""
    webhook_retention_s: float = Field(7 * 24 * 3600, gt=0)
    """How long delivered and failed deliveries are kept."""

    max_graph_tasks: int = 10_000
    """Most tasks one request may add (422 `graph_too_large` past it)."""
    max_session_tasks: int = 20_000
    """Most tasks one session may hold, over all its requests."""
    max_body_bytes: int = 16 * 1024 * 1024
    git_timeout_s: float = 600.0
    max_graph_edges: int = Field(50_000, ge=0)
    """Most dependency edges (`depends_on` entries, summed over its tasks) one request may
    add; a denser graph is refused (422 `graph_too_dense`) from the body's bytes, before it
    is parsed."""
    max_session_edges: int = Field(200_000, ge=0)
    """Most dependency edges one session may hold (422 `graph_too_dense` for the graph that
    would pass it)."""
    planner_agent: Literal["auto", "heuristic", "claude", "codex", "gemini"] = "auto"
    """Who plans a session's goal when its `settings.planner.agent` does not say: `auto` is
    the first of claude, codex, gemini with a live adapter, else the heuristic planner
    (which plans from the goal's structure, offline)."""
    max_json_depth: int = Field(64, ge=2, le=128)
    """How deeply a request body may nest arrays and objects; deeper is refused (422
    `too_deep`) as it streams in. At most 128, so anything accepted can be served back."""

    def bootstrap_token(self) -> str | None:
        return self.api_token.get_secret_value() if self.api_token else None

    def metrics_token_value(self) -> str | None:
        return self.metrics_token.get_secret_value() if self.metrics_token else None

    def secrets(self) -> list[str]:
        """What must never leave the process: the bootstrap token, the servers' passwords."""
        found = [self.bootstrap_token(), self.metrics_token_value()]
        for url in (self.database_url, self.redis_url):
            if url is not None:
                with contextlib.suppress(ValueError):
                    found.append(urlsplit(url.get_secret_value()).password)
        return [s for s in found if s]

    @field_validator("local_repo_roots", "hidden_paths", mode="before")
    @classmethod
    def _split_paths(cls, value: object) -> object:
        return split_setting(value, os.pathsep)

    @field_validator("repo_schemes", "repo_hosts", mode="before")
    @classmethod
    def _split_words(cls, value: object) -> object:
        return split_setting(value, ",")

    @field_validator("tenant_weights", mode="before")
    @classmethod
    def _split_weights(cls, value: object) -> object:
        if not isinstance(value, str) or value.lstrip().startswith("{"):
            return json.loads(value) if isinstance(value, str) else value
        pairs = [part.partition("=") for part in value.split(",") if part.strip()]
        if any(not sep for _, sep, _ in pairs):
            raise ValueError("expected tenant=weight pairs separated by commas")
        return {name.strip(): weight.strip() for name, _, weight in pairs}

    @field_validator("tenant_weights")
    @classmethod
    def _positive_weights(cls, value: dict[str, int]) -> dict[str, int]:
        wrong = sorted(name for name, weight in value.items() if not 1 <= weight <= 100)
        if wrong:
            raise ValueError(f"weights must be 1 to 100: {wrong}")
        return value

    @field_validator("repo_schemes")
    @classmethod
    def _known_schemes(cls, value: list[str]) -> list[str]:
        schemes = [s.lower() for s in value]
        unknown = sorted(set(schemes) - REPO_SCHEMES)
        if unknown:
            raise ValueError(f"unknown schemes {unknown}; known: {sorted(REPO_SCHEMES)}")
        return schemes

    @field_validator("prices")
    @classmethod
    def _valid_prices(cls, value: str) -> str:
        parse_prices(value)  # a ValueError says what is wrong
        return value

    def price_table(self) -> PriceTable:
        """The built-in prices with `prices` on top."""
        return PriceTable(self.price_overrides())

    def price_overrides(self) -> dict[str, Price]:
        return parse_prices(self.prices)


def split_setting(value: object, sep: str) -> object:
    """A JSON list as it is, or `a<sep>b` split, from the environment."""
    if not isinstance(value, str):
        return value
    if value.lstrip().startswith("["):
        return json.loads(value)
    return [part.strip() for part in value.split(sep) if part.strip()]


def get_settings() -> OrchestratorSettings:
    return OrchestratorSettings()
