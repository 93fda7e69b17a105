"""The first process inside an attempt's sandbox: it gives the command its network (TCP ports
on loopback that lead out through the adapter's Unix sockets, see `egress`), then runs the
command and exits as it did.

    python -I -S sandbox_init.py '{"forwards": {"8080": "/run/swarm-net/8080.sock"}}' -- argv...

Each forward listens on 127.0.0.1:<port> (and ::1 when there is IPv6 loopback) before the
command starts, so that it can connect at once; a daemon thread relays every connection to
its Unix socket in one `selectors` loop. The command gets SIGTERM, SIGINT and SIGHUP itself;
this process waits for it, then exits with its code or dies of the same signal (as
`swarm_common.supervise` does).

Standard library only, and no package import: Swarm is not installed inside the sandbox.
`socket`, `selectors` and `threading` are imported where they are used, and `json` only
for a spec that has forwards, so that a start without forwards costs no more than
the interpreter's own.
"""

from __future__ import annotations

import os
import signal
import sys

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing costs milliseconds
if TYPE_CHECKING:
    import selectors
    import socket

__all__ = ["main"]

CHUNK = 64 * 1024
BUFFERED = 256 * 1024
"""Bytes held for a slow side before the other side is no longer read."""
CONNECT_TIMEOUT_S = 5.0
NO_FORWARDS = ("{}", '{"forwards":{}}')


def _forwards(spec: str) -> dict[int, str]:
    """The spec's forwards, TCP port to Unix socket path; ValueError if malformed."""
    if spec.replace(" ", "") in NO_FORWARDS:
        return {}
    import json

    loaded = json.loads(spec)
    forwards = loaded.get("forwards", {}) if isinstance(loaded, dict) else None
    if not isinstance(forwards, dict):
        raise ValueError('not {"forwards": {...}}')
    found: dict[int, str] = {}
    for port, path in forwards.items():
        if not str(port).isdigit() or not 0 < int(port) < 65536 or not isinstance(path, str):
            raise ValueError(f"not a port and a socket path: {port!r}: {path!r}")
        found[int(port)] = path
    return found


def _listen(forwards: dict[int, str]) -> dict[socket.socket, str]:
    """A listening socket per forward on 127.0.0.1 (and on ::1 if it can), to its Unix path."""
    import socket

    listeners: dict[socket.socket, str] = {}
    for port, path in forwards.items():
        for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind((address, port))
                sock.listen(128)
            except OSError as exc:
                sock.close()
                if family == socket.AF_INET6:  # no IPv6 loopback: IPv4 only
                    continue
                raise OSError(f"cannot listen on {address}:{port}: {exc.strerror}") from exc
            sock.setblocking(False)
            listeners[sock] = path
    return listeners


class _Link:
    """One accepted connection and its Unix socket, relayed both ways. What one side sends
    waits in `pending[other]` until the other can take it; an EOF read from one side is
    passed on (`shutdown(SHUT_WR)`) once its bytes are written; both are closed when both
    directions are done, or at once when either fails."""

    def __init__(self, selector: selectors.BaseSelector, a: socket.socket, b: socket.socket):
        self.selector = selector
        self.peer = {a: b, b: a}
        self.pending = {a: bytearray(), b: bytearray()}  # to be written to this socket
        self.eof = {a: False, b: False}  # EOF read from this socket
        self.shut = {a: False, b: False}  # EOF passed on to this socket
        self.events = {a: 0, b: 0}  # what the selector watches for
        self.closed = False
        for sock in (a, b):
            sock.setblocking(False)
            self._watch(sock)

    def ready(self, sock: socket.socket, mask: int) -> None:
        import selectors
        import socket

        if self.closed:  # closed earlier in the same round of events
            return
        peer = self.peer[sock]
        try:
            if mask & selectors.EVENT_READ:
                data = sock.recv(CHUNK)
                self.pending[peer] += data
                self.eof[sock] = not data
            if mask & selectors.EVENT_WRITE:
                del self.pending[sock][: sock.send(self.pending[sock])]
            for side in (sock, peer):
                if self.eof[self.peer[side]] and not self.pending[side] and not self.shut[side]:
                    side.shutdown(socket.SHUT_WR)
                    self.shut[side] = True
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:  # reset, or broken
            self.close()
            return
        if all(self.shut.values()):
            self.close()
            return
        self._watch(sock)
        self._watch(peer)

    def _watch(self, sock: socket.socket) -> None:
        import selectors

        events = 0
        if not self.eof[sock] and len(self.pending[self.peer[sock]]) < BUFFERED:
            events |= selectors.EVENT_READ
        if self.pending[sock]:
            events |= selectors.EVENT_WRITE
        if events == self.events[sock]:
            return
        if not self.events[sock]:
            self.selector.register(sock, events, self)
        elif events:
            self.selector.modify(sock, events, self)
        else:
            self.selector.unregister(sock)
        self.events[sock] = events

    def close(self) -> None:
        self.closed = True
        for sock, events in self.events.items():
            if events:
                self.selector.unregister(sock)
            sock.close()


def _relay(listeners: dict[socket.socket, str]) -> None:
    """The relay thread: accept on the listeners, and move bytes for every link."""
    import selectors
    import socket

    selector = selectors.DefaultSelector()
    for listener, path in listeners.items():
        selector.register(listener, selectors.EVENT_READ, path)
    while True:
        for key, mask in selector.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if isinstance(key.data, _Link):
                key.data.ready(sock, mask)
                continue
            try:
                client, _ = sock.accept()
            except OSError:  # gone before it was accepted
                continue
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.settimeout(CONNECT_TIMEOUT_S)  # local, and at once unless flooded
                upstream.connect(key.data)
            except OSError:  # the adapter's side is gone: the client sees its connection end
                client.close()
                upstream.close()
                continue
            _Link(selector, client, upstream)


def _ignore(_signum: int, _frame: object) -> None:
    """SIGTERM/SIGINT/SIGHUP sent to the group reach the command too; this process waits for
    it. (A handler, not SIG_IGN: an ignored signal would stay ignored in the command.)"""


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        sys.stderr.write("usage: sandbox_init.py SPEC -- COMMAND [ARG...]\n")
        return 2
    command = argv[2:]
    try:
        forwards = _forwards(argv[0])
    except ValueError as exc:
        sys.stderr.write(f"sandbox_init: bad spec {argv[0]!r}: {exc}\n")
        return 2
    if forwards:
        import threading

        try:
            listeners = _listen(forwards)
        except OSError as exc:
            sys.stderr.write(f"sandbox_init: {exc}\n")
            return 125
        threading.Thread(target=_relay, args=(listeners,), name="relay", daemon=True).start()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _ignore)
    try:
        # posix_spawn, not subprocess (slow to import). SIGPIPE and SIGXFSZ, which Python
        # ignores, back to their defaults for the command.
        child = os.posix_spawnp(
            command[0], command, os.environ, setsigdef=(signal.SIGPIPE, signal.SIGXFSZ)
        )
    except OSError as exc:
        sys.stderr.write(f"cannot run {command[0]}: {exc.strerror}\n")
        return 127 if isinstance(exc, FileNotFoundError) else 126
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    if code < 0:  # died of a signal: die of the same one, so the parent sees it
        if -code not in (signal.SIGKILL, signal.SIGSTOP):  # these have no handler to reset
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
