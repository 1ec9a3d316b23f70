"""Headers that tell browsers to be strict with every response, unless a route set its own.

HSTS (`Strict-Transport-Security`) is not among them: it belongs to whatever terminates TLS,
usually the reverse proxy in front (see the README).
"""

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SECURITY_HEADERS = {
    # Browsers use the declared Content-Type, never a type guessed from the body.
    "X-Content-Type-Options": "nosniff",
    # No page of another site may frame these responses (clickjacking).
    "X-Frame-Options": "DENY",
    # Links followed from a response do not carry its URL (ids, query strings) to other sites.
    "Referrer-Policy": "no-referrer",
}


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
