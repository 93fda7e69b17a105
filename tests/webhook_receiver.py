"""A webhook receiver as a user would write one: a local HTTP server (in a thread, on
127.0.0.1) that checks each delivery's signature the way the README shows and records it.
It can be stopped and started again on its port (a receiver that was down), hold requests
(`slow`, until `release`), or answer another status."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Hit", "Receiver", "verify"]


def verify(secret: str, header: str, body: bytes, tolerance_s: int = 300) -> bool:
    """The check the README shows, written here on its own (not `signing.verify`)."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    t = int(fields["t"])
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return abs(time.time() - t) <= tolerance_s and hmac.compare_digest(expected, fields["v1"])


@dataclass
class Hit:
    delivery: str
    event: str
    attempt: int
    body: dict[str, Any]
    signed: bool


@dataclass
class Receiver:
    """A local HTTP server that records each POST; `slow` holds requests until `release`,
    `status` is what it answers."""

    secret: str = ""
    status: int = 200
    slow: bool = False
    port: int = 0
    hits: list[Hit] = field(default_factory=list)
    holding: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.slow:
                    with receiver._lock:
                        receiver.holding += 1
                    receiver.release.wait(30)
                    with receiver._lock:
                        receiver.holding -= 1
                hit = Hit(
                    delivery=self.headers["X-Swarm-Delivery"],
                    event=self.headers["X-Swarm-Event"],
                    attempt=int(self.headers["X-Swarm-Attempt"]),
                    body=json.loads(body),
                    signed=verify(receiver.secret, self.headers["X-Swarm-Signature"], body),
                )
                with receiver._lock:
                    receiver.hits.append(hit)
                with contextlib.suppress(OSError):  # a sender that gave up has gone
                    self.send_response(receiver.status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def got(self) -> list[Hit]:
        with self._lock:
            return list(self.hits)
