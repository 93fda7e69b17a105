"""How a delivery is signed, and how a receiver checks it.

`X-Swarm-Signature: t=<unix seconds>,v1=<hex>`, the hex being HMAC-SHA256 with the
webhook's secret over `f"{t}.".encode() + body` (the body's exact bytes). The time is part
of what is signed, so a receiver that refuses old timestamps (five minutes, say) is safe
from a captured request played again later; the delivery id (`X-Swarm-Delivery`) lets it
drop one it has already handled. Each attempt is signed anew, with its own time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

__all__ = ["HEADER", "new_secret", "sign", "signature_header", "verify"]

HEADER = "X-Swarm-Signature"
SCHEME = "v1"
SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},{SCHEME}={sign(secret, t, body)}"


def verify(
    secret: str, header: str, body: bytes, *, tolerance_s: int = 300, now: float | None = None
) -> bool:
    """Whether `header` signs `body` with `secret`, at a time within `tolerance_s` of now."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        t = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - t) > tolerance_s:
        return False
    return hmac.compare_digest(fields.get(SCHEME, ""), sign(secret, t, body))
