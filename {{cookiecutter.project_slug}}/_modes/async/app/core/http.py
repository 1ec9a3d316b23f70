"""One HTTP client for calls to other services, shared by every request.

Opened by the lifespan and closed after it, so connections (and TLS sessions) are reused, and
built in a thread: loading the certificate store takes tens of milliseconds, which a client
made per request would spend on the event loop each time.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import httpx

from app.core.concurrency import run_in_thread

# The client of this mode (awaited on the event loop): what the lifespan opens and handlers get.
HttpClient = httpx.AsyncClient


@asynccontextmanager
async def open_http_client(
    *, call_timeout: float, max_connections: int, max_keepalive_connections: int
) -> AsyncIterator[HttpClient]:
    make = partial(
        HttpClient,
        timeout=call_timeout,
        limits=httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_keepalive_connections,
        ),
    )
    async with await run_in_thread(make) as client:
        yield client
