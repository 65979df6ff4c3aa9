"""Before any route runs: the token, then a bounded body.

An ASGI middleware, so a request without the right token is answered 401
before its body is read at all, and no body larger than MAX_BODY_BYTES is
read into memory (413), whether it declares its length or streams it.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY_BYTES = 1 << 20  # the largest real body (a pool with its key) is < 2 KiB


async def _answer(send: Send, status: int, code: str, message: str,
                  headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"error": code, "message": message, "details": {}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """`scrape_token`, if set, opens GET `scrape_paths` only (Prometheus' scrape
    config holds it: a leaked one reads figures and changes nothing).
    `public_paths` are answered to GET without a token: static files that hold no
    data (the web view's page, which asks for the token)."""

    def __init__(self, app: ASGIApp, token: str, max_body_bytes: int = MAX_BODY_BYTES, *,
                 scrape_token: str = "", scrape_paths: tuple[str, ...] = (),
                 public_paths: tuple[str, ...] = ()) -> None:
        self.app, self._token, self.max_body = app, token.encode(), max_body_bytes
        self._scrape = scrape_token.encode()
        self._scrape_paths = scrape_paths
        self._public = public_paths

    def _allowed(self, scope: Scope, given: bytes) -> bool:
        if hmac.compare_digest(given, self._token):
            return True
        return bool(self._scrape) and scope.get("method") == "GET" and \
            scope.get("path") in self._scrape_paths and hmac.compare_digest(given, self._scrape)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope.get("method") in ("GET", "HEAD") and scope.get("path") in self._public:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"")
        scheme, _, given = auth.partition(b" ")
        if scheme.lower() != b"bearer" or not self._allowed(scope, given.strip()):
            await _answer(send, 401, "auth", "missing or wrong API token",
                          [(b"www-authenticate", b"Bearer")])
            return
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await _answer(send, 413, "too_large",
                          f"request body over {self.max_body} bytes")
            return
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_body:  # a streamed body without a length
                    raise HTTPException(413, f"request body over {self.max_body} bytes")
            return msg

        await self.app(scope, bounded, send)
