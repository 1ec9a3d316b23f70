"""Per request: its id, its count among the requests in flight, its metrics and its access log
line.

The id is the client's `X-Request-ID` when it sends a sane one (a proxy's, say), otherwise a
new one; either way it is returned in the response's `X-Request-ID` and carried by every log
record of the request.
"""

import logging
import re
import time
import uuid
from dataclasses import dataclass

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core import metrics
from app.core.logging import REQUEST_ID, escaped

access_logger = logging.getLogger("app.access")

# Printable, short, and free of anything that could forge a log line or a header.
# The methods a metric's label may name: a client may send any token as its method, and each
# new label value would be a new series kept until restart (CVE-2022-21698 in Go's client).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def route_template(scope: Scope) -> str:
    """The template of the route that served the request (`/api/v1/items/{item_id}`), never its
    path: one metric series per route, however many ids clients ask for.

    The route knows its own part of the template; the routers' static prefixes above it are the
    part of the path before what the route matched.
    """
    route, path = scope.get("route"), str(scope["path"])
    pattern, template = getattr(route, "path_regex", None), getattr(route, "path_format", None)
    if not isinstance(pattern, re.Pattern) or not isinstance(template, str):
        return "unmatched"
    for start in (index for index, char in enumerate(path) if char == "/"):
        if pattern.fullmatch(path[start:]):
            return path[:start] + template
    return template


@dataclass
class RequestsInFlight:
    count: int = 0


class RequestContextMiddleware:
    def __init__(
        self, app: ASGIApp, in_flight: RequestsInFlight, with_metrics: bool, access_log: bool
    ) -> None:
        self.app = app
        self.in_flight = in_flight
        self.with_metrics = with_metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get("x-request-id", "")
        request_id = given if SANE_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id  # for the stall monitor
        token = REQUEST_ID.set(request_id)
        status = 500  # what the client gets if the app fails before answering
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # Read from the request's scope: the stall monitor finds a streaming body's
                # request through the `send` it writes to (app.core.stalls).
                MutableHeaders(scope=message)["X-Request-ID"] = scope["state"]["request_id"]
            await send(message)

        self.in_flight.count += 1
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.in_flight.count -= 1
            elapsed = time.perf_counter() - started
            if self.access_log:
                log_access(scope, status, elapsed)
            REQUEST_ID.reset(token)
            if self.with_metrics:
                route = route_template(scope)
                method = scope["method"] if scope["method"] in METHODS else "other"
                metrics.REQUESTS.labels(method, route, str(status)).inc()
                metrics.REQUEST_DURATION.labels(method, route).observe(elapsed)


def log_access(scope: Scope, status: int, elapsed: float) -> None:
    """`127.0.0.1:37848 - "GET /api/v1/items/3 HTTP/1.1" 200 1.2ms`, with the request's id."""
    client = scope.get("client")
    address = f"{client[0]}:{client[1]}" if client else "-"
    target = scope.get("root_path", "") + scope["path"]
    if scope.get("query_string"):
        target += "?" + scope["query_string"].decode("latin-1")
    access_logger.info(
        '%s - "%s %s HTTP/%s" %d %.1fms',
        address,
        escaped(scope["method"]),
        escaped(target),
        scope.get("http_version", "1.1"),
        status,
        elapsed * 1000,
    )
