"""Which failures are worth retrying: a server briefly unreachable (transient), a value the
database refuses (bad input), or anything else (a bug); and how a loop that goes on after
one says so."""

from __future__ import annotations

import errno
import logging
import socket

from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

__all__ = ["is_bad_data", "is_transient", "log_retry", "sqlstate"]

_TRANSIENT_SQLSTATES = {
    "40001",
    "40P01",
    "57P01",
    "57P02",
    "57P03",
    "08000",
    "08001",
    "08003",
    "08004",
    "08006",
    "53300",
}
_NETWORK_ERRNOS = {
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.ETIMEDOUT,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ENETDOWN,
    errno.EHOSTDOWN,
    errno.EPIPE,
}


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error, however the driver wrapped it."""
    orig = getattr(exc, "orig", None)
    for candidate in (orig, getattr(orig, "__cause__", None), exc):
        code = getattr(candidate, "sqlstate", None)
        if isinstance(code, str):
            return code
    return None


def _network(exc: OSError) -> bool:
    if isinstance(exc, ConnectionError | TimeoutError | socket.gaierror):
        return True
    if exc.errno in _NETWORK_ERRNOS:
        return True
    # asyncio reports a failure to reach any address of a host as one OSError.
    return exc.errno is None and str(exc).startswith("Multiple exceptions")


def is_transient(exc: BaseException) -> bool:
    """Whether retrying later may succeed: the database or Redis was briefly unreachable,
    or a serialization failure or deadlock."""
    if isinstance(exc, RedisError | TimeoutError):
        return True
    if isinstance(exc, OSError):
        return _network(exc)
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        code = sqlstate(exc)
        if code is not None:
            return code in _TRANSIENT_SQLSTATES
        return isinstance(exc, OperationalError | InterfaceError)
    return False


def is_bad_data(exc: BaseException) -> bool:
    """The database refused a value (SQLSTATE class 22: a NUL byte, a string too long, a
    number out of range): the input's fault, not the server's."""
    code = sqlstate(exc) if isinstance(exc, DBAPIError) else None
    return code is not None and code.startswith("22")


def log_retry(log: logging.Logger, what: str, exc: BaseException, retry_in_s: float) -> None:
    """A loop step failed and `what` tries again in `retry_in_s`: a warning while its servers
    are away, the traceback for anything else (a bug, which the loop survives)."""
    extra = {"error": repr(exc), "retry_in_s": round(retry_in_s, 3)}
    if is_transient(exc):
        log.warning("%s waiting for its servers", what, extra=extra)
    else:
        log.error("%s failed; retrying", what, exc_info=exc, extra=extra)
