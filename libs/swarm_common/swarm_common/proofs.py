"""Proof of origin of adapter events: an HMAC-SHA256 with the attempt's own key.

The orchestrator makes a random key for every attempt when it queues it, keeps it with the
attempt, and sends it in the task message (`TaskMessage.event_key`). The adapter that runs
the attempt keeps the key in its memory only, never in its agent's environment, arguments,
files or logs, and puts a proof beside the envelope of every event about the attempt: the
stream field `proof` (`streams.PROOF_FIELD`), `sign(key, envelope)`. The proof covers the
envelope's exact bytes, so its type, id (unique per event), time, attempt, task, session and
worker; an event re-sent with the same envelope id carries the same proof, and one copied
to another attempt, or changed in any byte, proves nothing. The orchestrator checks it with
`verify` before an event can change anything.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["KEY_BYTES", "MAX_PROOF_CHARS", "new_key", "sign", "verify"]

KEY_BYTES = 32
"""256 random bits per attempt, kept as 64 hex digits."""
MAX_PROOF_CHARS = 128
"""A proof is 64 hex digits; anything much longer is not read."""
_DOMAIN = b"swarm-event-proof/1\n"
"""Prefixed to what is signed, so the key proves nothing but events."""


def new_key() -> str:
    """A fresh key for one attempt."""
    return secrets.token_hex(KEY_BYTES)


def sign(key: str, envelope: bytes) -> str:
    """The proof of `envelope` (the stream field's exact bytes) under `key`."""
    return hmac.new(bytes.fromhex(key), _DOMAIN + envelope, hashlib.sha256).hexdigest()


def verify(key: str | None, envelope: bytes, proof: str | None) -> bool:
    """Whether `proof` is the proof of `envelope` under `key`, in constant time. False when
    either is missing or malformed."""
    if not key or not proof or len(proof) > MAX_PROOF_CHARS:
        return False
    try:
        expected = sign(key, envelope)
    except ValueError:  # a key that is not hex
        return False
    return hmac.compare_digest(expected.encode(), proof.encode("ascii", errors="replace"))
