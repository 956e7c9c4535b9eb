"""A cap on request body size: bodies over the limit get 413 before they are buffered.

A declared ``Content-Length`` over the limit is refused at once; a body sent without one (chunked)
is counted as it arrives, and the read fails with an ``HTTPException(413)`` that the problem
handler turns into the usual JSON response.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from noetl.server import problems


class BodyLimit:
    """ASGI middleware refusing request bodies larger than ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        await self.app(scope, self._counting(receive), send)

    def _counting(self, receive: Receive) -> Receive:
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, self._reason())
            return message

        return counted

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problems.problem(413, self._reason(), "http_413")
        await response(scope, receive, send)

    def _reason(self) -> str:
        return (
            f"request body larger than {self.max_bytes} bytes "
            "(the server's NOETL_SERVER_MAX_BODY_BYTES raises the limit)"
        )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
