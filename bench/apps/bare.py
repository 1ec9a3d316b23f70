"""The stack's limit: Starlette and asyncpg, no ORM, no validation library."""

import os
from contextlib import asynccontextmanager

import anyio.to_thread
import asyncpg
from primes import count_primes_below
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


@asynccontextmanager
async def lifespan(app):
    dsn = os.environ["DATABASE_URL"]
    async with asyncpg.create_pool(dsn, min_size=10, max_size=10) as pool:
        app.state.pool = pool
        yield


async def health(request):
    return JSONResponse({"status": "ok"})


async def read_item(request):
    row = await request.app.state.pool.fetchrow(
        "SELECT id, title, description, created_at FROM items WHERE id = $1",
        int(request.path_params["item_id"]),
    )
    if row is None:
        return JSONResponse({"detail": "Item not found"}, status_code=404)
    return JSONResponse({**row, "created_at": row["created_at"].isoformat()})


async def primes(request):
    below = int(request.query_params["below"])
    count = await anyio.to_thread.run_sync(count_primes_below, below)
    return JSONResponse({"below": below, "count": count})


app = Starlette(
    routes=[
        Route("/health", health),
        Route("/api/v1/items/{item_id:int}", read_item),
        Route("/api/v1/examples/primes", primes),
    ],
    lifespan=lifespan,
)
