"""One attempt's way out of its sandbox: the Unix sockets in the folder that is bind-mounted
into the sandbox, and what each lets through.

The sandbox has its own network namespace with loopback only; `sandbox_init` inside it turns
TCP ports on 127.0.0.1 into connections to these sockets. `Egress` owns, for one attempt:

- `<port>.sock` for each forward: every connection goes to its fixed `Target` (the model
  server, say), bytes relayed both ways;
- `proxy.sock`: an HTTP proxy (`CONNECT host:port`, or an absolute-form `GET http://...`)
  that lets a connection through only to a host the allow-list names (`allowed`), and
  answers 403 otherwise, counting and logging the refusal.

Two allow-lists: `trusted` (the model APIs the adapter itself is configured with) may be
anywhere; `allow` (the session's `sandbox.allow_hosts`, a tenant's to write) never leads to
this machine or its loopback, link-local (a cloud's metadata service) or multicast
addresses: the name is resolved here, every address it gives is checked (one this machine
can bind is its own), and the connection goes to the address checked, so a name that
resolves elsewhere a moment later changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import re
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Egress", "Target", "allowed"]

log = logging.getLogger(__name__)

PROXY_SOCKET = "proxy.sock"
HEAD_LIMIT = 16 * 1024
HEAD_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 30.0
CHUNK = 64 * 1024
REFUSED_HOSTS_KEPT = 20
DEFAULT_PORTS = (80, 443)
"""What an allow-list entry without a port lets through."""

_HOSTNAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")
_DROPPED_HEADERS = ("proxy-connection:", "proxy-authorization:")


@dataclass(frozen=True)
class Target:
    """Where a forward goes."""

    host: str
    port: int


def _host(text: str) -> str:
    """`text` as one comparable host name (lower case, no trailing dot, IPv6 literals
    without brackets and in their short form); ValueError if it is not a host name."""
    host = text.lower().removeprefix("[").removesuffix("]").removesuffix(".")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        if not _HOSTNAME.fullmatch(host):
            raise ValueError(f"not a host name: {text!r}") from None
        return host


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"not a port: {text!r}")
    return int(text)


def _rule(entry: str) -> tuple[str, int | None]:
    """An allow-list entry as (host pattern, port or None); ValueError if malformed."""
    entry = entry.strip()
    port: int | None = None
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"not [host]:port: {entry!r}")
            port = _port(rest[1:])
    elif entry.count(":") == 1:
        host, _, port_text = entry.partition(":")
        port = _port(port_text)
    else:  # a name, or a bare IPv6 literal
        host = entry
    if host.startswith("*."):
        return "*." + _host(host[2:]), port
    return _host(host), port


def allowed(allow: Sequence[str], host: str, port: int) -> bool:
    """Whether the allow-list lets a connection to `host:port` through. An entry is `host`
    (ports 80 and 443), `host:port`, `*.domain` (any subdomain, not the domain itself; ports
    80 and 443) or `*.domain:port`; IPv6 literals in brackets. Host names match whole and
    case-insensitively. Raises ValueError on a malformed entry (`Egress` checks them first)."""
    try:
        wanted = _host(host)
    except ValueError:
        return False
    for entry in allow:
        pattern, entry_port = _rule(entry)
        if port not in ((entry_port,) if entry_port is not None else DEFAULT_PORTS):
            continue
        if pattern.startswith("*."):
            if wanted.endswith(pattern[1:]):  # `wanted` never starts with a dot
                return True
        elif wanted == pattern:
            return True
    return False


@dataclass(frozen=True)
class _Request:
    host: str
    port: int
    upstream_head: bytes | None
    """What to send upstream first; None for CONNECT (answered 200 instead)."""


def _parse_head(head: bytes) -> _Request:
    """A proxy request's head; ValueError if it is not one this proxy serves."""
    request_line, *headers = head.decode("latin-1").removesuffix("\r\n\r\n").split("\r\n")
    method, target, version = request_line.split(" ")
    if not version.startswith("HTTP/1."):
        raise ValueError(f"not HTTP/1: {version!r}")
    if method == "CONNECT":
        parts = urlsplit("//" + target)
        if parts.port is None or parts.path or parts.query or "@" in target:
            raise ValueError(f"not host:port: {target!r}")
        return _Request(_host(parts.hostname or ""), parts.port, None)
    parts = urlsplit(target)
    if parts.scheme.lower() != "http" or not parts.hostname:
        raise ValueError(f"not an absolute http:// URL: {target!r}")
    kept = [h for h in headers if not h.lower().startswith(_DROPPED_HEADERS)]
    if not any(h.lower().startswith("host:") for h in kept):
        kept.append(f"Host: {parts.netloc.rpartition('@')[2]}")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    upstream = "\r\n".join([f"{method} {path} {version}", *kept, "", ""])
    port = 80 if parts.port is None else parts.port
    return _Request(_host(parts.hostname), port, upstream.encode("latin-1"))


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _answer(status: str, text: str) -> bytes:
    body = text.encode()
    head = f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then pass the EOF on (the other direction may still be talking)."""
    while data := await reader.read(CHUNK):
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Egress:
    """One attempt's way out of its sandbox: a Unix socket per forward and an HTTP proxy,
    in `folder`. `refused`, `refused_hosts` (the first few, as `host:port`) and `allowed`
    (connections let through, forwards included) say what the attempt tried."""

    def __init__(
        self,
        folder: Path,
        *,
        forwards: Mapping[int, Target],
        allow: Sequence[str],
        trusted: Sequence[str] = (),
        context: Mapping[str, Any] | None = None,
    ) -> None:
        for entry in (*allow, *trusted):
            _rule(entry)  # a malformed entry fails here, not on the first request
        self.folder = folder
        self.forwards = dict(forwards)
        self.allow = list(allow)
        self.trusted = list(trusted)
        self.context = dict(context or {})
        self.refused = 0
        self.refused_hosts: list[str] = []
        self.allowed = 0
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    @property
    def sockets(self) -> list[Path]:
        names = [f"{port}.sock" for port in self.forwards] + [PROXY_SOCKET]
        return [self.folder / name for name in names]

    async def start(self) -> None:
        """Listen on every socket; the folder is made private (0700) first."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        try:
            for port, target in self.forwards.items():
                await self._listen(f"{port}.sock", functools.partial(self._forward, target))
            await self._listen(PROXY_SOCKET, self._proxy)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop listening, end every relay (awaiting its tasks) and remove the sockets."""
        self._closed = True
        for server in self._servers:
            server.close()
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        for path in self.sockets:
            path.unlink(missing_ok=True)

    async def _listen(self, name: str, serve: Handler) -> None:
        async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            try:
                if not self._closed:  # accepted just before close()
                    await serve(reader, writer)
            except OSError as exc:  # the client or the upstream went away
                log.debug("egress connection failed", extra={"error": repr(exc)} | self.context)
            except asyncio.CancelledError:
                # close() ended it. Python 3.11's stream server logs a handler task that ends
                # cancelled as an error, so it ends here.
                pass
            finally:
                self._tasks.discard(task)
                await _close(writer)

        path = str(self.folder / name)
        self._servers.append(await asyncio.start_unix_server(tracked, path, limit=HEAD_LIMIT))

    async def _forward(
        self, target: Target, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            upstream = await _connect(target.host, target.port)
        except (OSError, TimeoutError) as exc:
            fields = {"host": target.host, "port": target.port, "error": repr(exc)}
            log.warning("egress forward cannot connect", extra=self.context | fields)
            return
        self.allowed += 1
        await _relay((reader, writer), upstream)

    async def _proxy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
            request = _parse_head(head)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:  # a client that connects and leaves at once asked for nothing
                await self._refuse(writer, "400 Bad Request", "request head cut short")
            return
        except asyncio.LimitOverrunError:
            await self._refuse(writer, "400 Bad Request", "request head over 16 KiB")
            return
        except TimeoutError:
            await self._refuse(writer, "400 Bad Request", f"no request head in {HEAD_TIMEOUT_S}s")
            return
        except ValueError as exc:
            await self._refuse(writer, "400 Bad Request", f"bad proxy request: {exc}")
            return
        host, port = request.host, request.port
        where = _where(host, port)
        trusted = allowed(self.trusted, host, port)
        if not trusted and not allowed(self.allow, host, port):
            await self._refuse(writer, "403 Forbidden", f"{where} is not allowed", host, port)
            return
        try:
            address = host if trusted else await _remote_address(host, port)
            if address is None:
                reason = f"{where} is an address of this machine or of its local network"
                await self._refuse(writer, "403 Forbidden", reason, host, port)
                return
            upstream = await _connect(address, port)
        except (OSError, TimeoutError) as exc:
            error = str(exc) or "timed out"
            writer.write(
                _answer("502 Bad Gateway", f"swarm sandbox: cannot reach {where}: {error}")
            )
            return
        self.allowed += 1
        if request.upstream_head is None:
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            upstream[1].write(request.upstream_head)
        await _relay((reader, writer), upstream)

    async def _refuse(
        self,
        writer: asyncio.StreamWriter,
        status: str,
        reason: str,
        host: str | None = None,
        port: int | None = None,
    ) -> None:
        self.refused += 1
        if host is not None and port is not None:
            where = _where(host, port)
            if where not in self.refused_hosts and len(self.refused_hosts) < REFUSED_HOSTS_KEPT:
                self.refused_hosts.append(where)
        fields = {"host": host, "port": port, "reason": reason}
        log.warning("egress refused", extra=self.context | fields)
        writer.write(_answer(status, f"swarm sandbox: {reason}\n"))
        await writer.drain()


async def _remote_address(host: str, port: int) -> str | None:
    """The first address `host` resolves to, None when any of them is this machine's own,
    loopback, link-local, multicast or unspecified (OSError when it does not resolve)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses or any(_local(a) for a in addresses):
        return None
    return addresses[0]


def _local(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified:
        return True
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((str(ip), 0))  # only an address of this machine can be bound
        except OSError:
            return False
    return True


async def _connect(host: str, port: int) -> Streams:
    return await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT_S)


async def _relay(client: Streams, upstream: Streams) -> None:
    """Bytes both ways until both sides have closed, or either fails."""
    pipes = [
        asyncio.create_task(_pipe(client[0], upstream[1])),
        asyncio.create_task(_pipe(upstream[0], client[1])),
    ]
    try:
        await asyncio.wait(pipes, return_when=asyncio.FIRST_EXCEPTION)
    finally:  # nothing awaited before the upstream is closed: close() may cancel any await
        for pipe in pipes:
            pipe.cancel()
        upstream[1].close()
        await asyncio.gather(*pipes, return_exceptions=True)
        await _close(upstream[1])
