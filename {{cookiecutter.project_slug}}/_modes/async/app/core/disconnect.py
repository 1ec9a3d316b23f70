"""Stop work whose client has gone: nobody will read its answer."""

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request
from starlette.requests import ClientDisconnect

T = TypeVar("T")


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work`; if the client disconnects first, cancel it and raise `ClientDisconnect`.

    For long work in an `async def` handler: `await unless_disconnected(request, pool.run(...))`
    stops a process-pool job (and frees its worker) as soon as its client hangs up.
    """
    working = asyncio.ensure_future(work)
    watching = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({working, watching}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watching.cancel()
        if not working.done():  # the client left, or the request itself is being cancelled
            working.cancel()
    if working not in done:
        raise ClientDisconnect
    return working.result()


async def _disconnected(request: Request) -> None:
    # The handler runs once the body has been read: what remains to receive is the disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass
