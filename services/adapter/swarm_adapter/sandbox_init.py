"""The first process inside an attempt's sandbox: it gives the command its network (TCP ports
on loopback that lead out through the adapter's Unix sockets, see `egress`), then becomes
the command.

    python -I -S sandbox_init.py '{"forwards": {"8080": "/run/swarm-net/8080.sock"}}' -- argv...

Each forward listens on 127.0.0.1:<port> (and ::1 when there is IPv6 loopback) before the
command starts, so that it can connect at once; a forked child relays every connection to
its Unix socket in one `selectors` loop, and this process executes the command, whose exit
status and signals are then its own.

Standard library only, and no package import: Swarm is not installed inside the sandbox.
`socket` and `selectors` are imported where they are used, and `json` only for a spec that
has forwards, so that a start without forwards costs no more than the interpreter's own.
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
PARENT_CHECK_S = 0.5
"""How often the relay looks whether its command is still there."""
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


def _relay(listeners: dict[socket.socket, str], parent: int) -> None:
    """The relay: accept on the listeners, and move bytes for every link, until the command
    (`parent`, which this process was forked from) is gone."""
    import selectors
    import socket

    selector = selectors.DefaultSelector()
    for listener, path in listeners.items():
        selector.register(listener, selectors.EVENT_READ, path)
    while os.getppid() == parent:
        for key, mask in selector.select(timeout=PARENT_CHECK_S):
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


def main(argv: list[str]) -> int:
    """Listen, fork the relay, then become the command (`execvp`): its exit status and the
    signal it dies of are this process's own, with no waiting and translating in between.
    The relay lives in the forked child and ends with the command (the sandbox's PID
    namespace ends when its command does; outside one, it sees its parent gone)."""
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
        try:
            listeners = _listen(forwards)
        except OSError as exc:
            sys.stderr.write(f"sandbox_init: {exc}\n")
            return 125
        parent = os.getpid()
        if os.fork() == 0:
            try:  # the command's stop signals are its own: the relay outlives its goodbye
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    signal.signal(sig, signal.SIG_IGN)
                _relay(listeners, parent)
            finally:
                os._exit(0)
        for listener in listeners:
            listener.close()
    # What Python ignores (SIGPIPE, SIGXFSZ) and what bubblewrap was told to ignore (the
    # stop signals, see `sandbox.Cell.wrap`) go back to their defaults for the command.
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        sys.stderr.write(f"cannot run {command[0]}: {exc.strerror}\n")
        return 127 if isinstance(exc, FileNotFoundError) else 126


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
