"""Bound a request body: in size (413 before it is read in full) and in time (408).

FastAPI reads and parses a JSON body on the event loop, even for `def` handlers: a body of a
few megabytes would stall every other request while it is parsed. And a client that sends its
body a byte now and then would hold its request open for as long as it likes: the body must
arrive within a deadline, counted from the app's first read of it.
"""

import anyio
from fastapi import HTTPException, status
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        received = 0
        deadline: float | None = None
        complete = False

        async def limited_receive() -> Message:
            # Also counts bodies sent without (or with a false) Content-Length.
            nonlocal received, deadline, complete
            if complete:  # what follows the body (a disconnect) has no deadline
                return await receive()
            if deadline is None:
                deadline = anyio.current_time() + self.timeout
            with anyio.move_on_after(deadline - anyio.current_time()) as waiting:
                message = await receive()
            if waiting.cancelled_caught:
                raise HTTPException(
                    status.HTTP_408_REQUEST_TIMEOUT,
                    detail=f"Request body not received within {self.timeout:g} seconds",
                    headers={"Connection": "close"},
                )
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail=self._detail)
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await self.app(scope, limited_receive, send)

    @property
    def _detail(self) -> str:
        return f"Request body larger than {self.max_bytes} bytes"

    async def _refuse(self, send: Send) -> None:
        body = b'{"detail":"' + self._detail.encode() + b'"}'
        await send(
            {
                "type": "http.response.start",
                "status": status.HTTP_413_CONTENT_TOO_LARGE,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
