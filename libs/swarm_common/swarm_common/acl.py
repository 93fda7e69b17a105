"""Redis ACL users of Swarm: what the orchestrator and the adapters may do on Redis.

The rules are derived from the key layout of `swarm_common.streams.Keys` for one prefix:

- `orchestrator`: every key and pub/sub channel under the prefix, with the command
  categories Swarm uses (data, streams, pub/sub, transactions, Lua scripts), never a
  dangerous or administrative command (FLUSHALL, CONFIG, KEYS, SHUTDOWN, DEBUG, ACL, ...).
- `adapter`: exactly the commands an adapter sends (`swarm_adapter`'s `task_stream`,
  `reporting`, `heartbeat` and `upkeep`, `swarm_common.leases`, `swarm_common.system`,
  `swarm_common.streams`), each only on the
  keys it sends them to, through ACL selectors (Redis and Valkey 7+): the task streams
  (consume, acknowledge, take over), the events and dead-letter streams (append only: it
  cannot read, trim or delete them), claims and leases (the Lua scripts of
  `swarm_common.leases`; Redis checks every key a script touches), its liveness hash, and
  the control key and cancel requests read-only. It subscribes to no channel: cancel
  requests are polled. A new Redis call in the adapter needs its rule here;
  `tests/common/test_acl.py` runs a whole task under these rules and fails otherwise.
- `keda` (Kubernetes only, not among `USERS`): what KEDA's `redis-streams` scaler reads to
  size each kind's adapters (deploy/k8s): the task streams' pending count and lag, and the
  server's version; nothing else, and nothing it could change.

`setuser_args()` gives `ACL SETUSER` argument lists for a running server; `acl_lines()`
renders ACL-file (or config-file) lines that hold only SHA-256 hashes of the passwords, for
deployment files. `DEFAULT_OFF` turns the `default` user off, so a client that does not
authenticate can do nothing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping

from swarm_common.streams import Keys

__all__ = [
    "ADAPTER",
    "DEFAULT_OFF",
    "KEDA",
    "ORCHESTRATOR",
    "USERS",
    "acl_lines",
    "adapter_rules",
    "check_prefix",
    "keda_rules",
    "orchestrator_rules",
    "password_hash",
    "rules_for",
    "setuser_args",
]

ORCHESTRATOR = "orchestrator"
ADAPTER = "adapter"
USERS = (ORCHESTRATOR, ADAPTER)
KEDA = "keda"
"""The autoscaler's user: made only where KEDA scales the adapters, so not in `USERS`."""

DEFAULT_OFF = ["off", "resetpass", "resetkeys", "resetchannels", "-@all"]
"""Rules of the `default` user: no password, no key, no command, and off."""

_PREFIX_RE = re.compile(r"[A-Za-z0-9_.:/@+=-]+")
"""A prefix that can stand in an ACL pattern as it is (no glob, space, quote or bracket)."""

_CONNECTION = ["+ping", "+select", "+client|setinfo"]
"""What a client library sends on its own (redis-py: `CLIENT SETINFO` after AUTH, `SELECT`
for a database other than 0, `PING` as a health check). AUTH and HELLO need no rule."""


def check_prefix(prefix: str) -> str:
    """`prefix`, or ValueError when it cannot stand in ACL rules as it is."""
    if not _PREFIX_RE.fullmatch(prefix):
        raise ValueError(
            f"Redis prefix {prefix!r} cannot be used in ACL rules: "
            "use letters, digits and _ . : / @ + = - only"
        )
    return prefix


def _keys(prefix: str) -> Keys:
    return Keys(check_prefix(prefix))


def _any_attempt(key_of: Callable[[str, int], str]) -> str:
    """The pattern of a per-attempt key (`claim`, `lease`, `cancel`): any task, any attempt."""
    return key_of("*", 0).removesuffix(":0") + ":*"


def orchestrator_rules(prefix: str) -> list[str]:
    """Everything under the prefix with the command categories Swarm uses; no dangerous or
    administrative command, no server-side functions (scripts go with EVAL/EVALSHA)."""
    keys = _keys(prefix)
    return [
        "resetkeys",
        "resetchannels",
        f"~{keys.all_match}",
        f"&{keys.all_match}",
        "-@all",
        "+@read",
        "+@write",
        "+@keyspace",
        "+@connection",
        "+@pubsub",
        "+@transaction",
        "+eval",
        "+evalsha",
        "+script|load",
        "+script|exists",
        "+time",  # inside the rate limiter's script
        "-@admin",
        "-@dangerous",
        "-function",
    ]


def adapter_rules(prefix: str) -> list[str]:
    """Only the keys an adapter touches, each with only the commands it sends to it."""
    keys = _keys(prefix)
    tasks = keys.tasks("*")
    claims, leases, cancels = (_any_attempt(k) for k in (keys.claim, keys.lease, keys.cancel))
    stream_ops = "+xgroup|create +xreadgroup +xautoclaim +xclaim +xpending +xack"
    return [
        "resetkeys",
        "resetchannels",
        "-@all",
        *_CONNECTION,
        # Claims and leases: the scripts of `swarm_common.leases` and reading a claim.
        f"~{claims}",
        f"~{leases}",
        "+eval",
        "+get",
        "+set",
        "+pexpire",
        "+del",
        # The liveness hash, written in a MULTI/EXEC, deleted on the way out.
        "+multi",
        "+exec",
        "+discard",
        f"(~{keys.workers_match} +hset +expire +del)",
        # Task messages: consumed in group `adapters`, never written or trimmed.
        f"(~{tasks} {stream_ops})",
        # Results and dead letters: appended, never read, trimmed or deleted.
        f"(%W~{keys.events} %W~{keys.dead} +xadd)",
        # The system mode and cancel requests: read only (MGET: a noop batch's at once).
        f"(%R~{keys.control} %R~{cancels} +get +mget)",
    ]


def keda_rules(prefix: str) -> list[str]:
    """What KEDA's `redis-streams` scaler sends, as deploy/k8s configures it: `XPENDING`
    (entries handed out, not acknowledged) and `XINFO GROUPS` (the group's lag; `XLEN` while
    the group does not exist yet) on the task streams, read-only, and `INFO` (it checks the
    server is Redis 7 or newer before it reads a lag)."""
    tasks = _keys(prefix).tasks("*")
    return [
        "resetkeys",
        "resetchannels",
        "-@all",
        *_CONNECTION,
        "+info",
        f"(%R~{tasks} +xpending +xinfo|groups +xlen)",
    ]


def rules_for(user: str, prefix: str) -> list[str]:
    if user == ORCHESTRATOR:
        return orchestrator_rules(prefix)
    if user == ADAPTER:
        return adapter_rules(prefix)
    if user == KEDA:
        return keda_rules(prefix)
    known = ", ".join((*USERS, KEDA))
    raise ValueError(f"unknown Swarm Redis user {user!r}; known: {known}")


def password_hash(password: str) -> str:
    """The SHA-256 hex digest Redis keeps of a password (`#<hash>` in ACL rules)."""
    return hashlib.sha256(password.encode()).hexdigest()


def setuser_args(user: str, prefix: str, *, password: str) -> list[str]:
    """`ACL SETUSER` with every rule of `user`, starting from `reset`: running it again
    makes the same user (its old password is dropped)."""
    return ["ACL", "SETUSER", user, "reset", "on", f"#{password_hash(password)}"] + rules_for(
        user, prefix
    )


def acl_lines(prefix: str, password_hashes: Mapping[str, str | None]) -> list[str]:
    """ACL-file lines: the `default` user off, then each user named in `password_hashes`
    with its rules. A user whose hash is None gets no password: it cannot log in until one
    is set (`ACL SETUSER <user> ><password>`)."""
    lines = ["user default " + " ".join(DEFAULT_OFF)]
    for user, digest in password_hashes.items():
        if digest is not None and not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ValueError(f"the password hash of {user!r} is not a SHA-256 hex digest")
        password = [f"#{digest}"] if digest else []
        lines.append(" ".join(["user", user, "on", *password, *rules_for(user, prefix)]))
    return lines
