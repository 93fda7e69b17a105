"""A request body limit enforced before the body is read into memory (pure ASGI)."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodyLimit"]


class BodyLimit:
    """Answer 413 `body_too_large` for a body over `max_bytes`, whether it announces its
    size (`Content-Length`) or streams in chunks."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await _reject(send, self.max_bytes)
            return
        request = _Counted(receive, send, self.max_bytes)
        try:
            await self.app(scope, request.receive, request.send)
        except Exception:
            if not request.exceeded:
                raise
        await request.finish()


class _Counted:
    """One request's body, counted as it streams. Past the limit the app sees a disconnect
    (whatever it then does), and the client gets the 413 instead of the app's answer."""

    def __init__(self, receive: Receive, send: Send, max_bytes: int) -> None:
        self._receive = receive
        self._send = send
        self._max = max_bytes
        self._seen = 0
        self.exceeded = False
        self._responded = False

    async def receive(self) -> Message:
        if self.exceeded:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            self._seen += len(message.get("body", b""))
            if self._seen > self._max:
                self.exceeded = True
                return {"type": "http.disconnect"}
        return message

    async def send(self, message: Message) -> None:
        if not self.exceeded:
            await self._send(message)
        else:
            await self.finish()

    async def finish(self) -> None:
        if self.exceeded and not self._responded:
            self._responded = True
            await _reject(self._send, self._max)


async def _reject(send: Send, max_bytes: int) -> None:
    body = json.dumps(
        {
            "code": "body_too_large",
            "message": f"the request body exceeds {max_bytes} bytes",
            "details": {"limit": max_bytes},
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
