"""One HTTP client for calls to other services, shared by every request.

Opened by the lifespan and closed after it, so connections (and TLS sessions) are reused.
`def` handlers call it from their worker threads; an httpx client is safe to share between
threads.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import httpx

from app.core.concurrency import run_in_thread

# The client of this mode (called from worker threads): what the lifespan opens and handlers get.
HttpClient = httpx.Client


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
    # Building it loads the certificate store; closing it closes sockets: both off the loop.
    client = await run_in_thread(make)
    try:
        yield client
    finally:
        await run_in_thread(client.close)
