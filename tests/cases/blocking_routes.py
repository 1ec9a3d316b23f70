"""Routes that block the event loop, and routes that keep it free, to prove the loop guard.

Copied into a bake as app/api/routes/blocking.py by tests/test_loop_guard.py.
"""

import asyncio
import hashlib
import inspect
import sqlite3
import time
import urllib.request
from collections.abc import Awaitable, Callable

import sqlalchemy
from fastapi import APIRouter, Depends, FastAPI, Request, Response

from app.api.deps import ProcessPoolDep, SessionDep
from app.core.concurrency import run_in_thread
from app.services.primes import count_primes_below

router = APIRouter(prefix="/blocking", tags=["blocking"])
STALL = 0.15  # seconds
CPU_BELOW = 100_000  # about 0.3 s of trial division


# --- blocking: each of these holds the event loop ---


@router.get("/sleep")
async def sleep() -> dict[str, str]:
    time.sleep(STALL)
    return {"ok": "yes"}


@router.get("/sleep-swallowed")
async def sleep_swallowed() -> dict[str, str]:
    try:
        time.sleep(STALL)
    except Exception:  # a broad except must not hide the blocking call
        pass
    return {"ok": "yes"}


@router.get("/cpu")
async def cpu() -> dict[str, int]:
    return {"count": count_primes_below(CPU_BELOW)}


@router.get("/busy-100ms")
async def busy_100ms() -> dict[str, str]:
    # The smallest stall the guard must catch: 100 ms of wall-clock time spent computing.
    deadline = time.perf_counter() + 0.1
    while time.perf_counter() < deadline:
        pass
    return {"ok": "yes"}


@router.get("/c-extension")
async def c_extension() -> dict[str, str]:
    # C code that releases the GIL but still holds the loop: no call-level rule knows it.
    return {"key": hashlib.pbkdf2_hmac("sha256", b"password", b"salt", 500_000).hex()}


@router.get("/sqlite3")
async def sqlite3_query() -> dict[str, int]:
    with sqlite3.connect(":memory:") as connection:
        return {"value": connection.execute("SELECT 1").fetchone()[0]}


@router.get("/sync-engine")
async def sync_engine() -> dict[str, int]:
    engine = sqlalchemy.create_engine("sqlite://")
    with engine.connect() as connection:
        return {"value": connection.execute(sqlalchemy.text("SELECT 1")).scalar_one()}


@router.get("/psycopg2")
async def psycopg2_query(dsn: str) -> dict[str, int]:
    import psycopg2

    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        return {"value": cursor.fetchone()[0]}


@router.get("/http-client")
async def http_client() -> dict[str, str]:
    try:  # nothing listens on port 9 (discard) of loopback: refused at once, but still blocking
        urllib.request.urlopen("http://127.0.0.1:9/", timeout=1)
    except OSError as error:
        return {"error": type(error).__name__}
    return {"error": "none"}


def _slow_dependency() -> None:
    time.sleep(STALL)


async def slow_dependency() -> None:
    _slow_dependency()


@router.get("/dependency", dependencies=[Depends(slow_dependency)])
async def with_slow_dependency() -> dict[str, str]:
    return {"ok": "yes"}


@router.get("/middleware")
async def behind_slow_middleware() -> dict[str, str]:
    return {"ok": "yes"}


async def slow_middleware(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    if request.url.path == "/blocking/middleware":
        count_primes_below(CPU_BELOW)
    return await call_next(request)


def install(app: FastAPI) -> None:
    app.middleware("http")(slow_middleware)


# --- correct in async mode, blocking in sync mode: the session's calls are awaited or not ---


@router.get("/session")
async def session_in_async_def(session: SessionDep) -> dict[str, int]:
    result = session.execute(sqlalchemy.text("SELECT 1"))
    if inspect.isawaitable(result):
        result = await result
    return {"value": result.scalar_one()}


# --- correct: the loop stays free ---


@router.get("/async-sleep")
async def async_sleep() -> dict[str, str]:
    await asyncio.sleep(STALL)
    return {"ok": "yes"}


@router.get("/sleep-in-thread")
async def sleep_in_thread() -> dict[str, str]:
    await run_in_thread(time.sleep, STALL)
    return {"ok": "yes"}


@router.get("/cpu-in-process-pool")
async def cpu_in_process_pool(pool: ProcessPoolDep) -> dict[str, int]:
    return {"count": await pool.run(count_primes_below, CPU_BELOW)}


@router.get("/sleep-in-def")
def sleep_in_def() -> dict[str, str]:
    time.sleep(STALL)  # a plain `def` handler runs in a worker thread
    return {"ok": "yes"}
