"""A pytest plugin: a test fails if the app it drives blocked the event loop.

One thread runs the event loop; while a callback on it blocks (a `time.sleep`, a sync database
driver, a CPU-bound loop inside `async def`), every other request waits. The guard judges what
the *app* runs on the loop that serves it: requests (dependencies, middleware, streaming
bodies, background tasks), websockets, tasks and callbacks the app schedules, the lifespan's
start-up and shut-down, and the app's `async def` code a test calls directly (a service, a
repository). The test's own code is not judged, also where the app runs it (a dependency
override, a mock transport's handler: anything defined under `tests/`), nor a private loop that
a worker thread runs (`asyncio.run` inside a `def` handler).

What it catches, with no fixture to request:

- **Blocking calls**, however short: blockbuster's rules (sleeps, file and socket I/O, sqlite3,
  waiting on locks, events, queues and futures) and this file's own (name resolution, child
  processes, file metadata and reads, pipes and queues, TLS certificates, sync database drivers
  and engines, imports on first use, template environments built per request). Names bound
  before the guard started (`from time import sleep`, a default argument) are rebound in the
  project's modules. A call the code under test catches is still reported.
- **Stalls**: the app's share of every loop callback is timed per request (or task, or direct
  call), and a share that held the loop longer than the stall limit fails the test the first
  time: this sees CPU work and blocking inside C extensions, which no call rule can. Time the
  machine did not run the loop's thread (runnable but not running, read from Linux's
  schedstat) and time it waited while other threads ran are not counted, so a busy machine does
  not fail a test; the loop thread's own CPU time, garbage collection included, always counts.
  A watchdog thread samples the loop thread's stack to name the culprit and to tell the app's
  code from the test's.

What it cannot catch: code no test runs; blocking shorter than the limit that no rule names (a C
extension's own I/O); blocking in a worker thread (harmless to the loop). It times asyncio's
own loop: a test served on uvloop fails with a message saying how to run on asyncio.

Each problem fails the phase (setup, call or teardown) of the test during which it happened,
once, naming the request or task, the project's line, and a fix. Tasks and timers that a test's
requests leave behind are waited for (up to the settle time) and judged with that test.

Settings, the first one given wins: command-line option, environment variable, ini option.

    --loop-guard-stall-limit  LOOP_GUARD_STALL_LIMIT  loop_guard_stall_limit  seconds (0.08)
    --loop-guard-settle       LOOP_GUARD_SETTLE       loop_guard_settle       seconds (2)

The fixes its reports suggest name the project's own helpers where the ini option
`loop_guard_advice` gives them, as `topic: text` lines (topics: offload, cpu, http_client,
body_limit); without it, the standard library's.

This file comes from the project template and is the same in every project made from it:
`cruft update` updates it. What is your project's goes in pyproject.toml, never here.

Excusing blocking that is meant (the reason is required):

    with allow_blocking(reason="..."):            # one call or block of a test
        await client.get("/report")               # ... and the app's work it causes
    @pytest.mark.allow_blocking(reason="...")     # a whole test
"""

import asyncio
import contextlib
import gc
import importlib.abc
import inspect
import mimetypes
import os
import sys
import threading
import time
import traceback
import weakref
import zoneinfo
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import CodeType, FrameType, FunctionType
from typing import Any

import httpx
import pytest
from blockbuster import BlockBuster, BlockBusterFunction
from sqlalchemy import Engine, event
from starlette.applications import Starlette

PROJECT = Path(__file__).resolve().parents[1]
APP = PROJECT / "app"  # the package that runs on the loop; the rest is tests and tooling
TESTS = PROJECT / "tests"
BIG_BODY = 64 * 1024  # bytes: parsing a body this large takes milliseconds
# Taken before the rules wrap them: the guard's own calls are not judged.
_pread, _readlink = os.pread, os.readlink
_ASYNC_CODE = inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR | inspect.CO_ITERABLE_COROUTINE

# --- what the app is doing: set while it serves, inherited by the tasks it spawns -------------


@dataclass(frozen=True, eq=False)
class Culprit:
    label: str  # "GET /items/1", "WEBSOCKET /ws", "the app's lifespan"
    entered_by: "asyncio.Task[Any] | None"  # the task that called the app
    loop: asyncio.AbstractEventLoop | None = None  # the loop serving the app
    scope: dict[str, Any] = field(default_factory=dict)

    def handler(self) -> str | None:
        """The project's endpoint the request was routed to, once routing has found it."""
        code = getattr(self.scope.get("endpoint"), "__code__", None)
        if code is None or not _in_app(code.co_filename):
            return None
        where = Path(code.co_filename).relative_to(PROJECT)
        return f"{where}:{code.co_firstlineno} {code.co_name}()"

    def body_bytes(self) -> int:
        length = dict(self.scope.get("headers", [])).get(b"content-length", b"0")
        return int(length) if length.isdigit() else 0

    def name(self, task: "asyncio.Task[Any] | None") -> str:
        """The request, or the project's task it spawned, that `task` is running for."""
        code = getattr(task.get_coro(), "cr_code", None) if task is not None else None
        if task is self.entered_by or code is None or not _in_app(code.co_filename):
            return self.label  # the framework's own tasks are part of the request
        verb = "started by" if self.label == "the app's lifespan" else "spawned by"
        return f"task {code.co_name}() {verb} {self.label}"


_culprit: ContextVar[Culprit | None] = ContextVar("loop_guard_culprit", default=None)
_excuse: ContextVar[str | None] = ContextVar("loop_guard_excuse", default=None)


@contextlib.contextmanager
def allow_blocking(*, reason: str) -> Iterator[None]:
    """Excuse the blocking done inside this block, by the test and by the app it calls."""
    token = _excuse.set(reason)
    try:
        yield
    finally:
        _excuse.reset(token)


def _label(scope: dict[str, Any]) -> str:
    if scope["type"] == "http":
        return f"{scope['method']} {scope['path']}"
    if scope["type"] == "websocket":
        return f"WEBSOCKET {scope['path']}"
    return "the app's lifespan"


# --- whose code: the app's, or the test's ----------------------------------------------------


def _in_project(filename: str) -> bool:
    path = Path(filename)
    return (
        path.is_relative_to(PROJECT)
        and path != Path(__file__)
        and not {".venv", "site-packages"} & set(path.parts)
    )


def _in_app(filename: str) -> bool:
    """The project's code but its tests: what a stall report points at."""
    return _in_project(filename) and not Path(filename).is_relative_to(TESTS)


def _in_tests(filename: str) -> bool:
    return _in_project(filename) and Path(filename).is_relative_to(TESTS)


def _app_entry(code: CodeType) -> bool:
    return code is _judged_call_code


def _client_side(code: CodeType) -> bool:
    """The guard's frames between the app and its client (the test): the app's entry, and the
    `receive` and `send` it hands the app."""
    return code is _judged_call_code or code is _unjudged_code


def _tests_code_runs(frame: FrameType | None) -> bool:
    """Inside a request: the innermost frame of the project is the test's (a dependency
    override, a mock transport's handler), not the app's."""
    while frame is not None and not _app_entry(frame.f_code):
        filename = frame.f_code.co_filename
        if _in_project(filename):
            return _in_tests(filename)
        frame = frame.f_back
    return False


def _called_directly(frame: FrameType | None) -> FrameType | None:
    """Outside any request: the app's `async def` code the test called, when the innermost frame
    of the project is the app's and runs in one of its coroutines (a `def` of the app runs in a
    thread when the app calls it, so a test that calls one on the loop is the test's choice)."""
    entry = None
    innermost = True
    while frame is not None:
        filename = frame.f_code.co_filename
        if _client_side(frame.f_code):
            return None  # the client's side of a request: the test's
        if _in_project(filename):
            if not Path(filename).is_relative_to(APP):
                break
            if frame.f_code.co_flags & _ASYNC_CODE:
                entry = frame
            innermost = False
        frame = frame.f_back
    return None if innermost else entry


def _of_project(kind: type) -> bool:
    module = sys.modules.get(kind.__module__)
    return _in_project(getattr(module, "__file__", None) or "")


def _direct_label(entry: FrameType) -> str:
    where = Path(entry.f_code.co_filename).relative_to(PROJECT)
    return f"the test's direct call of {entry.f_code.co_name}() ({where})"


def _where(stack: traceback.StackSummary, handler: str | None) -> str:
    own = [frame for frame in stack if _in_app(frame.filename)]
    if not own:
        lines = ["".join(stack.format()[-1:]).rstrip() or "  (no stack: C code held the GIL)"]
        if handler:
            lines.append(f"  in the request for {handler}")
        return "\n".join(lines)
    lines = []
    for depth, frame in enumerate(reversed(own[-4:])):
        where = Path(frame.filename).relative_to(PROJECT)
        lead = "at" if depth == 0 else "called from"
        lines.append(f"  {lead} {where}:{frame.lineno} in {frame.name}: {frame.line}")
    if handler and not any(f"{frame.name}()" in handler for frame in own):
        # Only middleware of the app in the stack: the framework worked for this endpoint
        # (validating and serializing its answer, say).
        lines.append(f"  in the request for {handler}")
    return "\n".join(lines)


# The fixes the reports suggest, by topic; a project names its own helpers (loop_guard_advice).
ADVICE = {
    "offload": "`await asyncio.to_thread(func, ...)`",
    "cpu": "a process pool (`await loop.run_in_executor(pool, func, ...)`)",
    "http_client": "one client for the app, opened by its lifespan",
    "body_limit": "FastAPI's `max_body_size`",
}


def _read_advice(lines: list[str]) -> dict[str, str]:
    advice = dict(ADVICE)
    for line in lines:
        topic, _, text = line.partition(":")
        if topic.strip() not in ADVICE or not text.strip():
            raise pytest.UsageError(
                f"loop_guard_advice: {line!r} is not `topic: text` with a topic of "
                f"{', '.join(ADVICE)}"
            )
        advice[topic.strip()] = text.strip()
    return advice


def _advice(problem: "Problem", cpu_bound: bool, advice: dict[str, str]) -> str:
    what, stack = problem.what, problem.stack
    offload = advice["offload"]
    files = [frame.filename.replace("\\", "/") for frame in stack]
    own = any(_in_app(filename) for filename in files)
    if what.startswith("import "):
        return (
            "Import modules at the top of the file (`importlib.import_module` too, at start-up): "
            "an import reads files and runs code."
        )
    if what.startswith("ssl.SSLContext"):
        return (
            "Making an HTTP client loads the certificate store: share "
            f"{advice['http_client']} instead of making one per request."
        )
    if what.startswith("jinja2.Environment"):
        return (
            "A template environment made per request reads and compiles its templates every "
            "time: make `Jinja2Templates(...)` once, at module level."
        )
    if what.startswith("socket.get"):
        return (
            "Name resolution can take seconds: use an async client, or "
            "`await asyncio.get_running_loop().getaddrinfo(...)`."
        )
    # Reading the body (starlette), decoding its JSON, validating it (FastAPI, with pydantic).
    parsing = any("/json/" in f or f.endswith("starlette/requests.py") for f in files) or any(
        frame.name == "request_body_to_args" for frame in stack
    )
    if not own and (parsing or (not files and problem.body_bytes > BIG_BODY)):
        return (
            f"A request body ({problem.body_bytes} bytes) is parsed on the loop, even for a "
            f"`def` handler: cap the body size ({advice['body_limit']}), not the handler."
        )
    if cpu_bound:
        return (
            f"CPU work holds the loop: run it in {advice['cpu']} or make the handler a plain "
            "`def`; a large response is built and validated on the loop too: page it, or "
            "stream it."
        )
    if not stack:
        return (
            "C code waited while it held the GIL (no stack could be sampled): a C binding's "
            f"blocking call. Move it off the loop with {offload}."
        )
    if not own:
        return (
            "No frame of the project is in the culprit's stack: a library blocked. If it is a "
            "one-time cost, pay it before the tests (a session fixture); else move the call off "
            f"the loop with {offload}."
        )
    return (
        f"Use an async API, or move the call off the loop with {offload}, or make the handler "
        "a plain `def`."
    )


# --- problems: what blocked, during which request or task, where, and the fix ---------------


@dataclass
class Problem:
    what: str  # "time.sleep on the event loop", "the event loop was blocked for 120 ms (...)"
    culprit: str  # "GET /items", "task refresh() spawned by POST /items"
    stack: traceback.StackSummary
    cpu_bound: bool = False
    handler: str | None = None  # the endpoint, when no frame of the app is in the stack
    body_bytes: int = 0

    @property
    def place(self) -> tuple[str, str, int | None]:
        own = [frame for frame in self.stack if _in_app(frame.filename)] or self.stack[-1:]
        return (self.culprit, own[-1].filename, own[-1].lineno) if own else (self.culprit, "", 0)


def _report(problems: list[Problem], advice: dict[str, str]) -> str:
    """One paragraph per culprit and line: a call repeated in a loop, and the stall it caused,
    are one problem."""
    places: dict[tuple[str, str, int | None], list[Problem]] = {}
    for problem in problems:
        places.setdefault(problem.place, []).append(problem)
    paragraphs = []
    for first, *others in places.values():
        lines = [f"{first.what} during {first.culprit}", _where(first.stack, first.handler)]
        also = list(dict.fromkeys(other.what for other in others if other.what != first.what))
        if also:
            lines.append(f"  and there: {'; '.join(also)}")
        cpu_bound = any(problem.cpu_bound for problem in (first, *others))
        lines.append(f"  Fix: {_advice(first, cpu_bound, advice)}")
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


# --- call rules ------------------------------------------------------------------------------


def _always_blocks(*_args: Any, **_kwargs: Any) -> bool:
    return False  # "cannot block": never


def _select_returns_at_once(*args: Any, **kwargs: Any) -> bool:
    timeout = args[3] if len(args) > 3 else kwargs.get("timeout")
    return timeout == 0


def _non_blocking_socket(sock: Any, *_args: Any, **_kwargs: Any) -> bool:
    return not sock.getblocking()


def _wait_returns_at_once(*args: Any, **_kwargs: Any) -> bool:
    return len(args) > 1 and isinstance(args[-1], int) and bool(args[-1] & os.WNOHANG)


def _get_returns_at_once(_queue: Any, block: bool = True, timeout: float | None = None) -> bool:
    return not block or timeout == 0


def _poll_returns_at_once(_connection: Any, timeout: float | None = 0.0) -> bool:
    return timeout == 0


def _not_a_blocking_file(file: Any, *_args: Any, **_kwargs: Any) -> bool:
    """In-memory files, and descriptors in non-blocking mode (pipes and sockets the loop
    reads), do not wait for a disk."""
    try:
        return not os.get_blocking(file.fileno())
    except (OSError, ValueError, AttributeError):
        return True


# Blocking primitives of the standard library (and of drivers) that blockbuster leaves out, by
# kind: (name, predicate telling when a call cannot block).
MORE_RULES: list[tuple[str, Callable[..., bool]]] = [
    # name resolution: fast against /etc/hosts in tests, seconds when DNS is slow
    *[
        (f"socket.{name}", _always_blocks)
        for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr")
    ],
    ("socket.getnameinfo", _always_blocks),
    # sockets: the calls blockbuster does not wrap
    *[
        (f"socket.socket.{name}", _non_blocking_socket)
        for name in ("connect_ex", "sendmsg", "recvmsg_into", "sendfile")
    ],
    ("select.select", _select_returns_at_once),
    # TLS: loading certificates reads files and parses them (an HTTP client made per request)
    *[
        (f"ssl.SSLContext.{name}", _always_blocks)
        for name in ("load_verify_locations", "load_cert_chain", "load_default_certs")
    ],
    # child processes: waiting for one, or starting a shell; pipes and queues to workers
    *[(f"os.{name}", _wait_returns_at_once) for name in ("waitpid", "wait4", "waitid")],
    *[(f"os.{name}", _always_blocks) for name in ("wait", "wait3", "system")],
    *[
        (f"multiprocessing.connection.Connection.{name}", _always_blocks)
        for name in ("recv", "recv_bytes", "recv_bytes_into")
    ],
    ("multiprocessing.connection.Connection.poll", _poll_returns_at_once),
    ("_queue.SimpleQueue.get", _get_returns_at_once),
    # files: metadata, flushing to disk, positioned and vectored I/O
    *[
        (f"os.{name}", _always_blocks)
        for name in (
            "lstat",
            "chmod",
            "chown",
            "utime",
            "truncate",
            "fsync",
            "fdatasync",
            "pread",
            "pwrite",
            "readv",
            "writev",
            "copy_file_range",
            "makedirs",
            "removedirs",
        )
    ],
    # files: what iterating (a csv.reader), reading unbuffered and hashing a file call
    *[
        (f"io.{name}", _not_a_blocking_file)
        for name in (
            "BufferedReader.read1",
            "BufferedReader.readinto",
            "BufferedReader.readline",
            "TextIOWrapper.readline",
            "FileIO.read",
            "FileIO.readall",
            "FileIO.readinto",
        )
    ],
    ("hashlib.file_digest", _always_blocks),
    # psycopg2 and psycopg 3 wait for the server inside C: only these calls show it
    *[
        (f"psycopg2.{name}", _always_blocks)
        for name in (
            "connect",
            "extensions.cursor.execute",
            "extensions.cursor.executemany",
            "extensions.cursor.callproc",
            "extensions.connection.commit",
            "extensions.connection.rollback",
        )
    ],
    *[
        (f"psycopg.{name}", _always_blocks)
        for name in (
            "connect",
            "Connection.connect",
            "Connection.execute",
            "Connection.commit",
            "Connection.rollback",
            "Cursor.execute",
            "Cursor.executemany",
            "Cursor.fetchone",
            "Cursor.fetchmany",
            "Cursor.fetchall",
        )
    ],
    # a template environment made per request compiles its templates from disk every time
    ("jinja2.Environment.__init__", _always_blocks),
]

# Library code that blocks briefly, by design, on the loop: (file, functions it may block in).
ALLOWED = [
    # FastAPI reads an endpoint's source file once, to name it in error messages.
    ("fastapi/routing.py", {"_extract_endpoint_context"}),
    # asyncpg looks for ~/.pgpass and client certificates when it opens a connection.
    ("asyncpg/connect_utils.py", {"_read_password_file", "_parse_connect_dsn_and_args"}),
    # Submitting to a process pool writes one wake-up byte to the pool's pipe.
    ("concurrent/futures/process.py", {"submit"}),
    # Leaving `with ThreadPoolExecutor()` joins its threads: at once when the work was awaited
    # (the stall limit still judges a join that waits).
    ("concurrent/futures/thread.py", {"shutdown"}),
    # Jinja2 reads a template once, then checks its modification time on each render.
    ("jinja2/loaders.py", {"get_source", "uptodate"}),
    # Python reads modules, and tracebacks' source lines (the import rule judges imports).
    ("<frozen importlib._bootstrap_external>", {"get_data", "path_stats"}),
    ("<frozen importlib._bootstrap>", {"_find_and_load"}),
    ("linecache.py", {"checkcache", "updatecache"}),
    ("tokenize.py", {"open", "detect_encoding"}),
]

# Test tooling that runs on the loop's thread on its own account, whatever the app does:
# coverage's tracer (it looks at each new file), pytest's assertion rewriting.
TOOLING = ("/coverage/", "/pytest_cov/", "/_pytest/assertion/")


def _open_an_http_client() -> None:
    httpx.Client().close()  # the first client imports and loads its TLS machinery


def _parse_a_date() -> None:
    datetime.strptime("2000", "%Y")  # the first call imports _strptime


# One-time costs of libraries, paid before the tests rather than forgiven during them.
WARM_UPS: list[Callable[[], object]] = [
    mimetypes.init,  # FileResponse and StaticFiles guess types from the system's mime files
    _open_an_http_client,
    _parse_a_date,
]


def _never_waits(*args: Any, **_kwargs: Any) -> bool:
    """Files whose reads cannot wait: the kernel's own (/proc, /sys: a stall monitor reading
    its thread's schedstat), and a zone's file, which zoneinfo reads once, on first use, then
    caches (a one-time cost)."""
    path = args[0] if args else None
    if isinstance(path, int):  # a descriptor: the file it is open on
        try:
            path = _readlink(f"/proc/self/fd/{path}")
        except OSError:
            return False
    path = getattr(path, "name", path)  # a file object: the file it reads
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, str | os.PathLike):
        return False
    return str(path).startswith(("/proc/", "/sys/", *zoneinfo.TZPATH))


def _rules() -> BlockBuster:
    detector = BlockBuster()
    for name, can_not_block in MORE_RULES:
        with contextlib.suppress(ImportError, AttributeError):  # e.g. psycopg not installed
            function = BlockBusterFunction(None, name, can_block_predicate=can_not_block)
            if function.original_func is not None:
                detector.functions[name] = function
    for function in detector.functions.values():
        for filename, functions in ALLOWED:
            function.can_block_in(filename, functions)
    return detector


def _tooling(frame: FrameType | None) -> bool:
    """Whether test tooling makes this call: pytest's own log handlers (its log file, live
    logging), coverage's tracer: the runner's work, not the app's."""
    while frame is not None:
        filename = frame.f_code.co_filename.replace("\\", "/")
        if any(part in filename for part in TOOLING):
            return True
        handler = frame.f_locals.get("self") if frame.f_code.co_name == "emit" else None
        if type(handler).__module__ == "_pytest.logging":
            return True
        frame = frame.f_back
    return False


def _allowed_by(allowances: list[tuple[str, Any]], frame: FrameType | None) -> bool:
    while frame is not None:
        filename = frame.f_code.co_filename.replace("\\", "/")
        for suffix, functions in allowances:
            if filename.endswith(suffix) and frame.f_code.co_name in functions:
                return True
        frame = frame.f_back
    return False


class _ImportWatch(importlib.abc.MetaPathFinder):
    """Sees every import of a module not yet loaded, and reports those the project makes."""

    def __init__(self, guard: "LoopGuard") -> None:
        self.guard = guard

    def find_spec(self, fullname: str, *_args: Any) -> ModuleSpec | None:
        frame = sys._getframe(1)
        # Past importlib's own frames: `importlib.import_module(name)` is an import too.
        while frame is not None and (
            frame.f_code.co_filename.startswith("<frozen importlib")
            or frame.f_code.co_filename.replace("\\", "/").endswith("importlib/__init__.py")
        ):
            frame = frame.f_back  # type: ignore[assignment]
        if frame is not None and _in_project(frame.f_code.co_filename):
            self.guard.blocking_call(f"import {fullname}", frame)
        return None


# --- stalls ----------------------------------------------------------------------------------


class _RunQueueClock:
    """The calling thread's time runnable but not running, in seconds (Linux's schedstat), or
    None where the system does not say. Read with one pread of a descriptor kept open."""

    def __init__(self) -> None:
        self._files: dict[int, int] = {}

    def __call__(self) -> float | None:
        tid = threading.get_native_id()
        fd = self._files.get(tid)
        if fd is None:
            try:
                fd = os.open(f"/proc/self/task/{tid}/schedstat", os.O_RDONLY)
            except OSError:
                fd = -1
            self._files[tid] = fd
        if fd < 0:
            return None
        try:
            return int(_pread(fd, 128, 0).split()[1]) / 1e9
        except (OSError, IndexError, ValueError):  # a thread id reused: open it anew
            os.close(fd)
            del self._files[tid]
            return None

    def close(self) -> None:
        for fd in self._files.values():
            if fd >= 0:
                os.close(fd)
        self._files.clear()


@dataclass
class _Stretch:
    """The time one owner (a request or task, or the test's direct calls) held the loop within
    one callback, and what the watchdog saw it run."""

    culprit: Culprit | None  # None: outside any request (the test's code, or its direct calls)
    wall: float = 0.0
    cpu: float = 0.0
    starved: float = 0.0  # runnable, not running: the machine's doing
    others: float = 0.0  # CPU time the process's other threads used meanwhile
    app_samples: int = 0
    other_samples: int = 0
    sample: list[Any] | None = None  # the stack of the app's code, sampled while it ran
    direct: str | None = None  # for direct calls: which function of the app the test called


@dataclass
class _Running:
    """The callback the loop runs now, split into stretches by owner."""

    handle: asyncio.Handle
    thread: int
    stretches: dict[Culprit | None, _Stretch] = field(default_factory=dict)
    current: _Stretch | None = None
    marks: tuple[float, float, float, float | None, float] = (0.0, 0.0, 0.0, None, 0.0)
    since: float = 0.0  # when the callback began


class StallMonitor:
    """Times every callback an asyncio loop runs, by owner; a watchdog thread samples the long
    ones.

    The watchdog wakes every tenth of the limit. Where the system gives no run-queue time, the
    watchdog's own lateness during a callback stands for the time the machine did not run the
    process.
    """

    def __init__(self, limit: float, on_stall: Callable[[Problem], None]) -> None:
        self.limit = limit
        self.on_stall = on_stall
        self.armed = False
        self.slowest = 0.0  # the longest judged share of a callback (seconds)
        self.noisy: list[float] = []  # wall times of callbacks excused as machine noise
        self._running: _Running | None = None
        self._tick = limit / 10
        self._clock = (0.0, time.perf_counter() + self._tick)  # watchdog: (late, next wake)
        self._run_queue = _RunQueueClock()
        self._original_run: Callable[[asyncio.Handle], None] = asyncio.Handle._run
        self._stop = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name="loop-guard", daemon=True)

    def start(self) -> None:
        monitor, original_run = self, self._original_run

        def timed_run(handle: asyncio.Handle) -> None:
            monitor._timed(handle, original_run)

        asyncio.Handle._run = timed_run  # type: ignore[method-assign,assignment]
        self._watchdog.start()

    def stop(self) -> None:
        self._stop.set()
        self._watchdog.join()
        asyncio.Handle._run = self._original_run  # type: ignore[method-assign,assignment]
        self._run_queue.close()

    def enter_app(self, culprit: Culprit) -> None:
        """The test's code called the app, or got the loop back from its own side of it."""
        self._switch(culprit)

    def leave_app(self) -> None:
        self._switch(None)

    def _switch(self, culprit: Culprit | None) -> None:
        running = self._running
        if running is None or running.thread != threading.get_ident():
            return
        self._close(running)
        self._open(running, culprit)

    def _starved(self) -> float:
        """How late the watchdog is, in total: time this process could not run."""
        late, next_wake = self._clock
        return late + max(0.0, time.perf_counter() - next_wake)

    def _marks(self) -> tuple[float, float, float, float | None, float]:
        return (
            time.perf_counter(),
            time.thread_time(),
            time.process_time(),
            self._run_queue(),
            self._starved(),
        )

    def _open(self, running: _Running, culprit: Culprit | None) -> None:
        stretch = running.stretches.get(culprit)
        if stretch is None:
            stretch = running.stretches[culprit] = _Stretch(culprit)
        running.current = stretch
        running.marks = self._marks()

    def _close(self, running: _Running) -> None:
        stretch = running.current
        if stretch is None:
            return
        wall, cpu, process, queued, late = running.marks
        now, cpu_now, process_now, queued_now, late_now = self._marks()
        stretch.wall += now - wall
        stretch.cpu += cpu_now - cpu
        stretch.others += max(0.0, (process_now - process) - (cpu_now - cpu))
        if queued is not None and queued_now is not None:
            stretch.starved += queued_now - queued
        else:
            stretch.starved += late_now - late
        running.current = None

    def _timed(self, handle: asyncio.Handle, run: Callable[[asyncio.Handle], None]) -> None:
        if not self.armed:
            run(handle)
            return
        context = handle._context  # type: ignore[attr-defined]
        culprit = context.get(_culprit)
        loop = getattr(handle, "_loop", None)
        if culprit is not None and culprit.loop is not loop:
            run(handle)  # a private loop of a worker thread (`asyncio.run` in a `def`)
            return
        if culprit is None and threading.current_thread() is not threading.main_thread():
            run(handle)  # neither the app's loop nor the test's
            return
        running = self._running = _Running(handle, threading.get_ident())
        running.since = time.perf_counter()
        self._open(running, culprit)
        try:
            run(handle)
        finally:
            self._running = None
            self._close(running)
            if context.get(_excuse) is None:
                for stretch in running.stretches.values():
                    self._judge(running, stretch)

    def _judge(self, running: _Running, stretch: _Stretch) -> None:
        # Time spent waiting while other threads of the process ran (for the GIL, say) is
        # theirs; time the loop's thread spent waiting while nothing else ran (a sleep in C
        # that holds the GIL) is the app's.
        blocked = max(0.0, stretch.wall - stretch.cpu - stretch.starved)
        held = max(stretch.cpu, stretch.wall - stretch.starved - min(blocked, stretch.others))
        samples = stretch.app_samples + stretch.other_samples
        if samples:
            share = stretch.app_samples / samples
        else:  # not sampled (short, or C held the GIL): a request's own, a test's own
            share = 1.0 if stretch.culprit is not None else 0.0
        judged = held * share
        if judged <= self.limit:
            self.slowest = max(self.slowest, judged)
            if stretch.wall > self.limit and share:
                self.noisy.append(stretch.wall)
            return
        owner = getattr(getattr(running.handle, "_callback", None), "__self__", None)
        task = owner if isinstance(owner, asyncio.Task) else None
        stack = traceback.StackSummary.from_list(reversed(stretch.sample or []))
        computing = min(stretch.cpu, held) * share
        what = (
            f"the event loop was blocked for {judged * 1000:.0f} ms "
            f"({computing * 1000:.0f} ms of it computing)"
        )
        culprit = stretch.culprit
        if culprit is None:
            name, handler, body = stretch.direct or "the test's direct call of the app", None, 0
        else:
            name, handler, body = culprit.name(task), culprit.handler(), culprit.body_bytes()
        self.on_stall(Problem(what, name, stack, computing > judged / 2, handler, body))

    def _watch(self) -> None:
        """Track its own lateness; while a callback runs past a tick, sample whose code runs."""
        while not self._stop.wait(self._tick):
            now = time.perf_counter()
            late, next_wake = self._clock
            self._clock = (late + max(0.0, now - next_wake), now + self._tick)
            running = self._running
            if running is None or now - running.since < self._tick:
                continue
            stretch = running.current
            frame = sys._current_frames().get(running.thread)
            if stretch is None or frame is None:
                continue
            if stretch.culprit is not None:
                own = not _tests_code_runs(frame)
            else:
                entry = _called_directly(frame)
                own = entry is not None
                if entry is not None and stretch.direct is None:
                    stretch.direct = _direct_label(entry)
            if running.current is not stretch:  # the owner changed meanwhile: not its sample
                continue
            if not own:
                stretch.other_samples += 1
                continue
            stretch.app_samples += 1
            # No I/O here (no source lines): it would let the stalled thread run on meanwhile.
            stretch.sample = [
                (f.f_code.co_filename, f.f_lineno, f.f_code.co_name, None)
                for f, _ in traceback.walk_stack(frame)
            ]


# --- the guard: one per run, on config.stash -------------------------------------------------


class LoopGuard:
    def __init__(self, stall_limit: float, settle: float, advice: dict[str, str]) -> None:
        self.settle = settle
        self.advice = advice
        self.problems: list[Problem] = []
        self.refusal: str | None = None
        self.monitor = StallMonitor(stall_limit, self.problems.append)
        self.calls = _rules()
        self.spawned: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()
        self._loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
        self._warmed: weakref.WeakSet[Starlette] = weakref.WeakSet()
        self._rebound: list[Callable[[], None]] = []
        self._imports = _ImportWatch(self)
        self._app_call: Any = Starlette.__call__

    @property
    def armed(self) -> bool:
        return self.monitor.armed

    def start(self) -> None:
        for warm_up in WARM_UPS:
            warm_up()
        for function in self.calls.functions.values():
            function.can_block_predicate = self._judging(function)
        self.calls.activate()
        self._rebind_early_names()
        event.listen(Engine, "before_cursor_execute", self._sync_engine)
        sys.meta_path.insert(0, self._imports)
        Starlette.__call__ = self._judged_app_call()  # type: ignore[method-assign,assignment]
        self.monitor.start()

    def stop(self) -> None:
        self.monitor.stop()
        Starlette.__call__ = self._app_call  # type: ignore[method-assign]
        sys.meta_path.remove(self._imports)
        event.remove(Engine, "before_cursor_execute", self._sync_engine)
        for restore in reversed(self._rebound):
            restore()
        self.calls.deactivate()

    def blocking_call(self, call: str, frame: FrameType | None) -> None:
        """Record a blocking call made on this thread, if the app made it on the loop serving
        it, or in its `async def` code a test called directly."""
        if not self.armed or _excuse.get() is not None:
            return
        loop = asyncio._get_running_loop()
        if loop is None:
            return  # no loop runs in this thread: blocking is fine here
        culprit = _culprit.get()
        if culprit is None:
            entry = _called_directly(frame)
            if entry is None or threading.current_thread() is not threading.main_thread():
                return  # the test's own code
            name, handler, body = _direct_label(entry), None, 0
        else:
            if culprit.loop is not loop or _tests_code_runs(frame):
                return  # a worker thread's private loop; the test's code the app called
            task = asyncio.current_task(loop)
            name, handler, body = culprit.name(task), culprit.handler(), culprit.body_bytes()
        stack = traceback.extract_stack(frame)
        self.problems.append(
            Problem(f"{call} on the event loop", name, stack, False, handler, body)
        )

    def _judging(self, function: BlockBusterFunction) -> Callable[..., bool]:
        """blockbuster's predicate, made to record the app's blocking calls and never raise."""
        cannot_block = function.can_block_predicate

        def predicate(*args: Any, **kwargs: Any) -> bool:
            if self.armed and not cannot_block(*args, **kwargs) and not _never_waits(*args):
                frame = sys._getframe(2)  # the caller of blockbuster's wrapper
                allowed = _allowed_by(function.can_block_functions, frame) or _tooling(frame)
                if not allowed:
                    self.blocking_call(function.full_name, frame)
            return True

        return predicate

    def _sync_engine(self, conn: Any, *_args: Any) -> None:
        # An AsyncEngine runs its sync core on the loop thread too, without blocking: skip it.
        if not conn.dialect.is_async:
            call = f"a sync SQLAlchemy engine ({conn.dialect.driver})"
            self.blocking_call(call, sys._getframe(1))

    def _rebind_early_names(self) -> None:
        """Names bound to a blocking function before the guard started, in the project's modules:
        `from time import sleep`, a default argument (`def __init__(self, sleep=time.sleep)`),
        an attribute of an object made at import. Point each at the rule's wrapper."""
        wrapped = {
            id(function.original_func): getattr(function.module, function.func_name)
            for function in self.calls.functions.values()
            if function.activated
        }

        def rebind(owner: Any, name: str, value: Any) -> None:
            wrapper = wrapped.get(id(value))
            if wrapper is not None:
                with contextlib.suppress(AttributeError, TypeError):
                    setattr(owner, name, wrapper)
                    self._rebound.append(lambda: setattr(owner, name, value))

        def rebind_defaults(function: FunctionType) -> None:
            if not _in_project(function.__code__.co_filename):
                return
            defaults = function.__defaults__ or ()
            if any(id(value) in wrapped for value in defaults):
                function.__defaults__ = tuple(wrapped.get(id(v), v) for v in defaults)
                self._rebound.append(lambda: setattr(function, "__defaults__", defaults))
            keywords = function.__kwdefaults__ or {}
            if any(id(value) in wrapped for value in keywords.values()):
                function.__kwdefaults__ = {k: wrapped.get(id(v), v) for k, v in keywords.items()}
                self._rebound.append(lambda: setattr(function, "__kwdefaults__", keywords))

        for module in list(sys.modules.values()):
            filename = getattr(module, "__file__", None)
            if not filename or not _in_project(filename):
                continue
            for name, value in list(vars(module).items()):
                rebind(module, name, value)
                if isinstance(value, FunctionType):
                    rebind_defaults(value)
                elif isinstance(value, type) and _of_project(value):
                    for member in vars(value).values():
                        if isinstance(member := inspect.unwrap(member), FunctionType):
                            rebind_defaults(member)
                elif _of_project(type(value)) and hasattr(value, "__dict__"):
                    for attribute, held in list(vars(value).items()):
                        rebind(value, attribute, held)

    def _judged_app_call(self) -> Callable[..., Awaitable[None]]:
        guard, app_call = self, self._app_call

        async def judged_call(app: Starlette, scope: Any, receive: Any, send: Any) -> None:
            if _culprit.get() is not None:  # a mounted app, inside one already judged
                await app_call(app, scope, receive, send)
                return
            loop = asyncio.get_running_loop()
            if not isinstance(loop, asyncio.BaseEventLoop) and guard.armed:
                guard.refusal = (
                    f"the loop guard times asyncio's own event loop, and this test serves the "
                    f"app on {type(loop).__module__}.{type(loop).__qualname__}, whose callbacks "
                    "run in C where it cannot see them. Run the tests on asyncio's loop (remove "
                    "the uvloop loop factory or event_loop_policy fixture from the tests); the "
                    "served app may keep uvloop."
                )
            guard._prepare(app)
            culprit = Culprit(_label(scope), asyncio.current_task(), loop, scope)
            token = _culprit.set(culprit)
            guard.monitor.enter_app(culprit)
            try:
                await app_call(app, scope, guard.unjudged(receive), guard.unjudged(send))
            finally:
                guard.monitor.leave_app()
                _culprit.reset(token)

        global _judged_call_code
        _judged_call_code = judged_call.__code__
        return judged_call

    def unjudged(self, channel: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        """The client's side of `receive` and `send` (a test's upload file, say) is the test's."""
        monitor = self.monitor

        async def call(*args: Any) -> Any:
            culprit = _culprit.get()
            token = _culprit.set(None)
            monitor.leave_app()
            try:
                return await channel(*args)
            finally:
                _culprit.reset(token)
                if culprit is not None:
                    monitor.enter_app(culprit)

        global _unjudged_code
        _unjudged_code = call.__code__
        return call

    def _prepare(self, app: Starlette) -> None:
        """Pay the app's one-time costs unjudged, and follow the tasks its requests spawn."""
        if app not in self._warmed:
            self._warmed.add(app)
            if hasattr(app, "openapi"):
                app.openapi()  # FastAPI builds the schema on the first request for it
        loop = asyncio.get_running_loop()
        if loop not in self._loops and loop.get_task_factory() is None:
            self._loops.add(loop)
            loop.set_task_factory(self._spawn)

    def _spawn(
        self, loop: asyncio.AbstractEventLoop, coro: Any, context: Any = None
    ) -> "asyncio.Task[Any]":
        task = asyncio.Task(coro, loop=loop, context=context)
        culprit = _culprit.get() if context is None else context.get(_culprit)
        if culprit is not None and culprit.label != "the app's lifespan":
            self.spawned.add(task)
        return task

    def settle_left_behind(self) -> None:
        """Let the tasks a test's requests spawned, and the callbacks they scheduled soon
        (`loop.call_later`), run while the test is still judged."""
        pending = [task for task in self.spawned if not task.done()]
        self.spawned = weakref.WeakSet()
        for loop in {*self._loops, *(task.get_loop() for task in pending)}:
            if loop.is_running() or loop.is_closed():
                continue
            tasks = [task for task in pending if task.get_loop() is loop]
            horizon = loop.time() + self.settle
            timers = [
                handle.when()
                for handle in getattr(loop, "_scheduled", [])
                if not handle.cancelled()
                and handle.when() <= horizon
                and (culprit := handle._context.get(_culprit)) is not None
                and culprit.label != "the app's lifespan"
            ]
            if tasks or timers:
                loop.run_until_complete(self._settle(loop, tasks, max(timers, default=0.0)))

    async def _settle(
        self, loop: asyncio.AbstractEventLoop, tasks: list["asyncio.Task[Any]"], until: float
    ) -> None:
        if tasks:
            await asyncio.wait(tasks, timeout=self.settle)
        await asyncio.sleep(max(0.0, until - loop.time()))
        await asyncio.sleep(0)  # the timers due by now have run

    @contextlib.contextmanager
    def judging(self, item: pytest.Item, phase: str) -> Iterator[None]:
        """Judge one phase of a test; report what the app blocked, once, in place of the rest."""
        self.problems.clear()
        self.refusal = None
        self.monitor.armed = item.get_closest_marker("allow_blocking") is None
        failure: Exception | None = None
        try:
            yield
        except Exception as error:  # the test's own failure: reported after the guard's
            failure = error
        finally:
            with contextlib.suppress(Exception):
                self.settle_left_behind()
            self.monitor.armed = False
        if self.refusal:
            pytest.fail(f"{item.nodeid} ({phase}): {self.refusal}", pytrace=False)
        if self.problems:
            also = f"\n\n(The test also failed: {failure!r})" if failure else ""
            pytest.fail(
                f"{item.nodeid} blocked the event loop ({phase}):\n\n"
                + _report(self.problems, self.advice)
                + "\n\nExcuse blocking that is meant: `with allow_blocking(reason=...)` around "
                "one call of a test, or @pytest.mark.allow_blocking(reason=...) on a test "
                f"(tests/loop_guard.py).{also}",
                pytrace=False,
            )
        if failure is not None:
            raise failure


# The guard's own frames around the app, to tell the app's side of a stack from the client's.
_judged_call_code: CodeType | None = None
_unjudged_code: CodeType | None = None

# --- hooks, in the order pytest calls them ---------------------------------------------------

guard_key = pytest.StashKey[LoopGuard]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("loop-guard", "fail tests whose app blocks the event loop")
    for name, default, text in [
        ("stall_limit", "0.08", "longest a callback of the app may hold the loop (s)"),
        ("settle", "2", "how long to wait for tasks a test's requests spawned (s)"),
    ]:
        option = "--loop-guard-" + name.replace("_", "-")
        group.addoption(option, dest=f"loop_guard_{name}", type=float, help=text)
        parser.addini(f"loop_guard_{name}", text, default=default)
    parser.addini(
        "loop_guard_advice",
        "the fixes reports suggest, as `topic: text` lines (offload, cpu, http_client, body_limit)",
        type="linelist",
    )


def _setting(config: pytest.Config, name: str) -> float:
    option = config.getoption(f"loop_guard_{name}")
    if option is not None:
        return float(option)
    return float(
        os.environ.get(f"LOOP_GUARD_{name.upper()}") or config.getini(f"loop_guard_{name}")
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "allow_blocking(reason): the loop guard does not judge this test "
        "(to excuse one call, use `with allow_blocking(reason=...)`)",
    )
    advice = _read_advice(config.getini("loop_guard_advice"))
    guard = LoopGuard(_setting(config, "stall_limit"), _setting(config, "settle"), advice)
    config.stash[guard_key] = guard
    guard.start()


def pytest_collection_finish(session: pytest.Session) -> None:
    # What is alive now (pytest, the imported libraries, the collected tests) lives to the end:
    # freeze it, so that a garbage collection during a test costs what the test's objects cost,
    # and is counted as the app's time when the app's allocations start it.
    gc.collect()
    gc.freeze()


def pytest_unconfigure(config: pytest.Config) -> None:
    guard = config.stash.get(guard_key, None)
    if guard is not None:
        guard.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    # Likewise what earlier tests left alive (session fixtures, caches, coverage's data): a
    # collection late in the run costs what this test's objects cost, as one early on does.
    gc.collect()
    gc.freeze()
    with item.config.stash[guard_key].judging(item, "setup"):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    with item.config.stash[guard_key].judging(item, "call"):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    with item.config.stash[guard_key].judging(item, "teardown"):
        return (yield)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    guard = terminalreporter.config.stash.get(guard_key, None)
    if guard is None or not guard.monitor.slowest:
        return
    monitor = guard.monitor
    line = (
        f"loop guard: slowest callback of the app {monitor.slowest * 1000:.1f} ms "
        f"(limit {monitor.limit * 1000:.0f} ms)"
    )
    if monitor.noisy:
        line += (
            f"; {len(monitor.noisy)} longer by the clock (up to {max(monitor.noisy) * 1000:.0f} "
            "ms), the machine's doing"
        )
    terminalreporter.write_line(line)
