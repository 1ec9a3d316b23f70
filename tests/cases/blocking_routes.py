"""Routes that block the event loop, and routes that keep it free, to prove the loop guard.

Copied into a bake as app/api/routes/blocking.py (with templates/page.html beside it) by
tests/test_loop_guard.py; `install(app)` adds a middleware, static files and a lifespan that
(with BLOCKING_LIFESPAN set) blocks once at start-up and once at shut-down.
"""

import asyncio
import csv
import ctypes
import hashlib
import importlib
import inspect
import json
import logging
import multiprocessing
import os
import queue
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time
import urllib.request
import zlib
import zoneinfo
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from time import sleep as bound_sleep  # bound at import: before the guard starts
from typing import Annotated, Any

import anyio
from pydantic import BaseModel, TypeAdapter

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

from app.api.deps import HttpClientDep, CpuDep, SessionDep
from app.core.concurrency import run_in_thread

router = APIRouter(prefix="/blocking", tags=["blocking"])
correct = APIRouter(prefix="/correct", tags=["blocking"])
STALL = 0.15  # seconds
SHORT = 0.001  # far below the stall limit: only a call rule can see it
HOLD = 0.3  # seconds of the loop thread's CPU: far above the limit, on any machine
HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
logger = logging.getLogger(__name__)
_cache: list[int] = []  # built on first use
_background: set[asyncio.Task[None]] = set()
_installed: list[FastAPI] = []


def compute(seconds: float) -> int:
    """Pure-Python CPU work measured by this thread's CPU clock, not by an amount of work: it
    holds the loop as long on a fast machine as on a slow or busy one."""
    deadline, rounds = time.thread_time() + seconds, 0
    while time.thread_time() < deadline:
        rounds += sum(range(1_000)) > 0
    return rounds


class RateLimiter:
    """Waits between calls; its `sleep` is bound when the class is defined, before the guard."""

    def __init__(self, interval: float, sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval, self.sleep = interval, sleep

    def wait(self) -> None:
        self.sleep(self.interval)


class Product(BaseModel):
    id: int
    name: str
    price: float
    tags: list[str]


def _products_for(seconds: float) -> int:
    """How many products take about `seconds` to validate and serialize on this machine."""
    sample = [{"id": n, "name": f"p{n}", "price": 1.5, "tags": ["a", "b"]} for n in range(2_000)]
    adapter = TypeAdapter(list[Product])
    started = time.thread_time()
    adapter.dump_json(adapter.validate_python(sample))
    return int(len(sample) * seconds / max(time.thread_time() - started, 1e-4))


# Measured at import, before any test runs: validating and serializing on FastAPI's path costs
# several times more than the measure, so this holds the loop for about a second.
PRODUCTS = _products_for(HOLD)


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
    return {"count": compute(HOLD)}


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
    deadline, key = time.thread_time() + HOLD, b""
    while time.thread_time() < deadline:
        key = hashlib.pbkdf2_hmac("sha256", b"password", b"salt", 20_000)
    return {"key": key.hex()}


@router.get("/busy-150ms")
async def busy_150ms() -> dict[str, int]:
    return {"rounds": compute(0.15)}


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
        compute(HOLD)
    return await call_next(request)


@router.get("/client-per-request")
async def client_per_request() -> dict[str, bool]:
    async with httpx.AsyncClient() as client:  # loads the certificate store, on the loop
        return {"closed": client.is_closed}


@router.get("/first-only")
async def first_only() -> dict[str, int]:
    # A cache built by the first request: it blocks once, after every deploy.
    if not _cache:
        _cache.append(compute(HOLD))
    return {"count": _cache[0]}


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
    compute(HOLD)


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
    # Only the first app's lifespan blocks (the session's): later ones are tests' own apps.
    blocks = bool(os.environ.get("BLOCKING_LIFESPAN")) and not _installed
    _installed.append(app)

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
async def cpu_in_process_pool(pool: CpuDep) -> dict[str, int]:
    return {"count": await pool.run(compute, HOLD)}


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
    """Computes briefly while the machine does not run this process for 200 ms (the helper
    does it, as a crowded machine would): the clock says 200 ms, the loop's thread did not
    block."""
    started, cpu = time.perf_counter(), time.thread_time()
    os.kill(helper, signal.SIGUSR1)
    lost = 0.0
    while lost < 0.15 and time.perf_counter() - started < 2:
        lost = (time.perf_counter() - started) - (time.thread_time() - cpu)
    return {"lost": lost}


# --- blocking, as users write it: each of these holds the event loop too ---

limiter = RateLimiter(0.05)


@router.get("/default-arg-sleep")
async def default_arg_sleep() -> dict[str, str]:
    limiter.wait()  # time.sleep, bound as a default argument at import
    return {"ok": "yes"}


@router.get("/import-module")
async def import_module() -> dict[str, str]:
    return {"module": importlib.import_module("poplib").__name__}  # loaded on first use


@router.get("/gil-wait")
async def gil_wait() -> dict[str, str]:
    # A C binding that waits 150 ms holding the GIL: no rule names it, no CPU clock sees it.
    ctypes.PyDLL(None).usleep(int(STALL * 1_000_000))
    return {"ok": "yes"}


def _send_later(channel: Any, delay: float) -> None:
    time.sleep(delay)
    if isinstance(channel, queue.SimpleQueue):
        channel.put("done")
    else:
        channel.send("done")


@router.get("/pipe-recv")
async def pipe_recv() -> dict[str, str]:
    receiving, sending = multiprocessing.Pipe(duplex=False)
    threading.Thread(target=_send_later, args=(sending, 0.05)).start()
    return {"got": receiving.recv()}  # waits for the worker


@router.get("/simple-queue")
async def simple_queue() -> dict[str, str]:
    results: queue.SimpleQueue[str] = queue.SimpleQueue()
    threading.Thread(target=_send_later, args=(results, 0.05)).start()
    return {"got": results.get(timeout=5)}


@router.get("/psycopg3")
async def psycopg3_query(dsn: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(dsn) as connection:
        row = connection.execute("SELECT 1").fetchone()
        return {"value": row[0] if row else 0}


@router.get("/file-digest")
async def file_digest(path: str) -> dict[str, str]:
    with open(path, "rb") as file:  # noqa: ASYNC230
        return {"sha256": hashlib.file_digest(file, "sha256").hexdigest()}


@router.get("/csv-file")
async def csv_file(path: str) -> dict[str, int]:
    with open(path, newline="") as file:  # noqa: ASYNC230
        return {"rows": sum(1 for _ in csv.reader(file))}


@router.get("/unbuffered-read")
async def unbuffered_read(path: str) -> dict[str, int]:
    with open(path, "rb", buffering=0) as file:  # noqa: ASYNC230
        return {"bytes": len(file.read())}


@router.get("/many-products", response_model=list[Product])
async def many_products() -> list[dict[str, Any]]:
    # Validated against the response model and serialized on the loop: a large answer.
    return [{"id": n, "name": f"p{n}", "price": 1.5, "tags": ["a", "b"]} for n in range(PRODUCTS)]


@router.get("/jinja-per-request", response_class=HTMLResponse)
async def jinja_per_request(request: Request) -> Response:
    per_request = Jinja2Templates(directory=HERE / "templates")  # compiled again every time
    return per_request.TemplateResponse(request, "page.html", {"name": "guard"})


def _flush() -> None:
    time.sleep(SHORT)


@router.post("/call-later")
async def call_later() -> dict[str, str]:
    asyncio.get_running_loop().call_later(0.05, _flush)  # runs after the response has gone
    return {"ok": "yes"}


@router.get("/read-text")
async def read_text() -> dict[str, int]:
    return {"size": len((HERE / "templates" / "page.html").read_text())}  # noqa: ASYNC240


@router.get("/subprocess")
async def run_subprocess() -> dict[str, int]:
    return {"code": subprocess.run(["true"], check=False).returncode}  # noqa: ASYNC221


@router.get("/sync-httpx")
async def sync_httpx() -> dict[str, str]:
    try:  # nothing listens on port 9 of loopback
        httpx.get("http://127.0.0.1:9/", timeout=1)  # noqa: ASYNC210
    except httpx.HTTPError as error:
        return {"error": type(error).__name__}
    return {"error": "none"}


@router.get("/event-wait")
async def event_wait() -> dict[str, bool]:
    done = threading.Event()
    threading.Timer(0.05, done.set).start()
    return {"set": done.wait(1)}


@router.get("/future-result")
async def future_result() -> dict[str, int]:
    with ThreadPoolExecutor(1) as pool:
        return {"rounds": pool.submit(compute, 0.05).result()}


def load_settings_file() -> dict[str, str]:
    return {"path": str(HERE), "size": str(len((HERE / "blocking.py").read_bytes()))}


async def settings_from_file() -> dict[str, str]:
    return load_settings_file()


@router.get("/dependency-file")
async def dependency_file(
    settings: Annotated[dict[str, str], Depends(settings_from_file)],
) -> dict[str, str]:
    return settings


@router.get("/password-hash")
async def password_hash() -> dict[str, str]:
    # Hashing a password is CPU work in C (scrypt): it holds the loop, measured by its clock.
    deadline, key = time.thread_time() + HOLD, b""
    while time.thread_time() < deadline:
        key = hashlib.scrypt(b"secret", salt=b"salt", n=2**12, r=8, p=1)
    return {"key": key.hex()}


@router.get("/compress")
async def compress() -> dict[str, int]:
    data, size = os.urandom(1 << 20), 0
    deadline = time.thread_time() + HOLD
    while time.thread_time() < deadline:
        size = len(zlib.compress(data, 9))
    return {"size": size}


@router.get("/list-dir")
async def list_dir() -> dict[str, int]:
    return {"files": len(os.listdir(HERE))}


@router.get("/copy-file")
async def copy_file(path: str) -> dict[str, str]:
    return {"copy": shutil.copyfile(HERE / "blocking.py", path)}


async def report_status(url: str) -> int:
    """A service function: calls another service with the standard library's client."""
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:  # noqa: ASYNC210
            return int(answer.status)
    except OSError:
        return 0


async def summarise(seconds: float) -> int:
    """A service function that computes on the loop."""
    return compute(seconds)


# --- correct, as users write it: the loop stays free ---


@correct.get("/asyncio-run-in-def")
def asyncio_run_in_def() -> dict[str, int]:
    async def sdk_call() -> int:  # an async SDK, driven from a worker thread
        await asyncio.sleep(0.01)
        time.sleep(SHORT)
        return compute(STALL)

    return {"rounds": asyncio.run(sdk_call())}


@correct.get("/anyio-run-in-def")
def anyio_run_in_def() -> dict[str, int]:
    async def sdk_call() -> int:
        await anyio.sleep(0.01)
        return compute(STALL)

    return {"rounds": anyio.run(sdk_call)}


@correct.get("/strptime")
async def strptime(when: str = "2026-12-06 10:00") -> dict[str, str]:
    return {"when": datetime.strptime(when, "%Y-%m-%d %H:%M").isoformat()}


@correct.get("/zoneinfo")
async def zone(key: str = "Europe/Paris") -> dict[str, str]:
    return {"now": datetime.now(zoneinfo.ZoneInfo(key)).isoformat()}


@correct.get("/executor-block")
async def executor_block() -> dict[str, int]:
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor() as pool:  # as asyncio's docs write it
        return {"rounds": await loop.run_in_executor(pool, compute, STALL)}


async def current_user() -> dict[str, str]:
    """The app's user; tests override it with a fake one."""
    raise NotImplementedError


@correct.get("/me")
async def me(user: Annotated[dict[str, str], Depends(current_user)]) -> dict[str, str]:
    return user


@correct.get("/cpu-6ms")
async def cpu_6ms() -> dict[str, int]:
    return {"rounds": compute(0.006)}


@correct.get("/cpu-30ms")
async def cpu_30ms() -> dict[str, int]:
    return {"rounds": compute(0.03)}


@correct.get("/read-in-thread")
async def read_in_thread() -> dict[str, int]:
    text = await run_in_thread((HERE / "templates" / "page.html").read_text)
    return {"size": len(text)}


@correct.get("/digest-in-thread")
async def digest_in_thread() -> dict[str, str]:
    def digest() -> str:
        with open(HERE / "blocking.py", "rb") as file:
            return hashlib.file_digest(file, "sha256").hexdigest()

    return {"sha256": await asyncio.to_thread(digest)}


@correct.get("/loop-getaddrinfo")
async def loop_getaddrinfo() -> dict[str, int]:
    addresses = await asyncio.get_running_loop().getaddrinfo("localhost", 80)
    return {"addresses": len(addresses)}


def read_config() -> dict[str, str]:
    return {"size": str(len((HERE / "blocking.py").read_bytes()))}


@correct.get("/def-dependency-file")
async def def_dependency_file(
    config: Annotated[dict[str, str], Depends(read_config)],
) -> dict[str, str]:
    return config  # a `def` dependency runs in a worker thread


@correct.get("/sync-stream")
async def sync_stream() -> StreamingResponse:
    def lines() -> Iterator[bytes]:  # a sync iterator: Starlette runs it in a worker thread
        with open(HERE / "blocking.py", "rb") as file:
            yield from file

    return StreamingResponse(lines())


@correct.get("/lazy-import-in-def")
def lazy_import_in_def() -> dict[str, str]:
    import tabnanny  # noqa: F401  # a worker thread imports it: the loop stays free

    return {"ok": "yes"}


@correct.get("/json-body-small")
async def small_json(numbers: str = "[1, 2, 3]") -> dict[str, int]:
    return {"count": len(json.loads(numbers))}


async def poll_status() -> str:
    """A service function that awaits: correct when a test calls it directly."""
    await asyncio.sleep(0.01)
    return "ok"
