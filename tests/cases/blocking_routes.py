"""Routes that block the event loop, and routes that keep it free, to prove the loop guard.

Copied into a bake as app/api/routes/blocking.py (with templates/page.html beside it) by
tests/test_loop_guard.py; `install(app)` adds a middleware, static files and a lifespan that
(with BLOCKING_LIFESPAN set) blocks once at start-up and once at shut-down.
"""

import asyncio
import hashlib
import inspect
import logging
import os
import signal
import socket
import sqlite3
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from time import sleep as bound_sleep  # bound at import: before the guard starts
from typing import Any

import httpx
import sqlalchemy
from fastapi import (
    APIRouter,
    BackgroundTasks,
    Depends,
    FastAPI,
    Request,
    Response,
    UploadFile,
    WebSocket,
)
from fastapi.responses import FileResponse, HTMLResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from app.api.deps import HttpClientDep, ProcessPoolDep, SessionDep
from app.core.concurrency import run_in_thread
from app.services.primes import count_primes_below

router = APIRouter(prefix="/blocking", tags=["blocking"])
correct = APIRouter(prefix="/correct", tags=["blocking"])
STALL = 0.15  # seconds
SHORT = 0.001  # far below the stall limit: only a call rule can see it
CPU_BELOW = 100_000  # about 0.3 s of trial division
HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
logger = logging.getLogger(__name__)
_primes: list[int] = []  # built on first use
_background: set[asyncio.Task[None]] = set()


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
    # The smallest stall the guard must catch: 100 ms of the loop thread's CPU time, however
    # long that takes by the clock on a busy machine.
    deadline = time.thread_time() + 0.1
    while time.thread_time() < deadline:
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


@router.get("/client-per-request")
async def client_per_request() -> dict[str, bool]:
    async with httpx.AsyncClient() as client:  # loads the certificate store, on the loop
        return {"closed": client.is_closed}


@router.get("/first-only")
async def first_only() -> dict[str, int]:
    # A cache built by the first request: it blocks once, after every deploy.
    if not _primes:
        _primes.append(count_primes_below(CPU_BELOW))
    return {"count": _primes[0]}


@router.get("/lazy-import")
async def lazy_import() -> dict[str, str]:
    import mailbox  # read from disk by the first request

    return {"module": mailbox.__name__}


@router.get("/bound-sleep")
async def short_bound_sleep() -> dict[str, str]:
    bound_sleep(SHORT)
    return {"ok": "yes"}


@router.get("/getaddrinfo")
async def resolve() -> dict[str, int]:
    # Fast against /etc/hosts in a test, seconds when DNS is slow in production.
    return {"addresses": len(socket.getaddrinfo("localhost", 80))}


async def _refresh_later() -> None:
    await asyncio.sleep(0.05)  # after the response has gone
    count_primes_below(CPU_BELOW)


@router.post("/spawn")
async def spawn() -> dict[str, str]:
    task = asyncio.create_task(_refresh_later())
    _background.add(task)
    task.add_done_callback(_background.discard)
    return {"ok": "yes"}


@router.get("/stream")
async def stream() -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"first "
        time.sleep(SHORT)
        yield b"second"

    return StreamingResponse(chunks())


@router.websocket("/ws")
async def websocket(websocket: WebSocket) -> None:
    await websocket.accept()
    time.sleep(SHORT)
    await websocket.send_text("hello")
    await websocket.close()


@router.get("/wait-in-c")
async def wait_in_c() -> dict[str, str]:
    # Off the CPU, inside C, in a call no rule names: only the clock sees it.
    signal.sigtimedwait([signal.SIGUSR2], STALL)
    return {"ok": "yes"}


big_body = APIRouter(tags=["blocking"])


@big_body.post("/blocking/big-json")
def big_json(numbers: list[int]) -> dict[str, int]:
    return {"count": len(numbers)}


file_logger = logging.getLogger(f"{__name__}.file")


@router.get("/log-to-file")
async def log_to_file() -> dict[str, str]:
    file_logger.warning("written by the event loop's thread")
    return {"ok": "yes"}


def install(app: FastAPI) -> None:
    app.middleware("http")(slow_middleware)
    app.mount("/correct-static", StaticFiles(directory=HERE), name="static")
    handler = logging.FileHandler(HERE / "blocking.log", delay=True)
    file_logger.addHandler(handler)  # no queue in front: each record is written on the loop
    served = app.router.lifespan_context
    blocks = bool(os.environ.get("BLOCKING_LIFESPAN"))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        if blocks:
            bound_sleep(SHORT)  # start-up blocks
        async with served(app) as state:
            yield state
        if blocks:
            socket.gethostbyname("localhost")  # shut-down blocks

    app.router.lifespan_context = lifespan


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


@correct.get("/file")
async def file() -> FileResponse:
    return FileResponse(HERE / "blocking.py")


@correct.post("/upload")
async def upload(file: UploadFile) -> dict[str, int]:
    return {"size": len(await file.read())}


@correct.get("/page", response_class=HTMLResponse)
async def page(request: Request) -> Response:
    return templates.TemplateResponse(request, "page.html", {"name": "guard"})


@correct.get("/log")
async def log() -> dict[str, str]:
    logger.warning("queued on the loop, written by a thread")
    return {"ok": "yes"}


@correct.get("/remote")
async def remote(http: HttpClientDep, url: str) -> dict[str, int]:
    # The app's shared client (sync mode: an httpx.Client, called in a worker thread).
    if isinstance(http, httpx.AsyncClient):
        response = await http.get(url)
    else:
        response = await run_in_thread(http.get, url)
    return {"status": response.status_code}


def _write_report() -> None:
    time.sleep(STALL)  # a `def` background task runs in a worker thread


@correct.post("/background")
async def background(tasks: BackgroundTasks) -> dict[str, str]:
    tasks.add_task(_write_report)
    return {"ok": "yes"}


@correct.get("/stream")
async def correct_stream() -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for number in range(3):
            await asyncio.sleep(0.01)
            yield f"{number} ".encode()

    return StreamingResponse(chunks())


@correct.get("/paused")
async def paused(helper: int) -> dict[str, float]:
    """Computes briefly while the machine stops this process for 200 ms (the helper does it,
    as a busy machine would): the clock says 200 ms, the loop's thread did not block."""
    started, cpu = time.perf_counter(), time.thread_time()
    os.kill(helper, signal.SIGUSR1)
    lost = 0.0
    while lost < 0.15 and time.perf_counter() - started < 2:
        lost = (time.perf_counter() - started) - (time.thread_time() - cpu)
    return {"lost": lost}
