"""A pytest plugin: a test fails if the app it drives blocked the event loop.

One thread runs the event loop; while a callback on it blocks (a `time.sleep`, a sync database
driver, a CPU-bound loop inside `async def`), every other request waits. The guard judges what
the *app* runs on the loop, and nothing else: requests (dependencies, middleware, streaming
bodies, background tasks), websockets, tasks the app spawns, and the lifespan's start-up and
shut-down. The test's own code is not judged: an `async def` test may read a fixture file.

What it catches, with no fixture to request:

- **Blocking calls**, however short: blockbuster's rules (sleeps, file and socket I/O, sqlite3,
  waiting on locks, events, queues and futures) and this file's own (name resolution, waiting for
  child processes, file metadata, loading TLS certificates, sync database drivers and engines,
  importing a module from the project's code). Names bound before the guard started
  (`from time import sleep`) are rebound in the project's modules. A call the code under test
  catches is still reported.
- **Stalls**: every loop callback is timed, and one that held the loop longer than the stall
  limit fails the test the first time: this sees CPU work and blocking inside C extensions,
  which no call rule can. Time the machine took the loop's thread off the CPU (which starves the
  guard's watchdog thread too, so it is measured) and garbage collection are not counted, so a
  busy machine does not fail a test; the loop thread's own CPU time always counts. The watchdog
  samples the culprit's stack while the stall lasts.

What it cannot catch: code no test runs; blocking shorter than the limit that no rule names (a C
extension's own I/O); blocking in a worker thread (harmless to the loop).

Each problem fails the phase (setup, call or teardown) of the test during which it happened,
once, naming the request or task, the project's line, and a fix. Tasks that a test's requests
spawn are waited for (up to the settle time) and judged with that test.

Settings, the first one given wins: command-line option, environment variable, ini option.

    --loop-guard-stall-limit  LOOP_GUARD_STALL_LIMIT  loop_guard_stall_limit  seconds (0.08)
    --loop-guard-settle       LOOP_GUARD_SETTLE       loop_guard_settle       seconds (2)

Excusing blocking that is meant (the reason is required):

    with allow_blocking(reason="..."):            # one call or block of a test
        await client.get("/report")               # ... and the app's work it causes
    @pytest.mark.allow_blocking(reason="...")     # a whole test
"""

import asyncio
import contextlib
import gc
import importlib.abc
import mimetypes
import os
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

import httpx
import pytest
from blockbuster import BlockBuster, BlockBusterFunction
from sqlalchemy import Engine, event
from starlette.applications import Starlette

PROJECT = Path(__file__).resolve().parents[1]
BIG_BODY = 64 * 1024  # bytes: parsing a body this large takes milliseconds

# --- what the app is doing: set while it serves, inherited by the tasks it spawns -------------


@dataclass(frozen=True)
class Culprit:
    label: str  # "GET /items/1", "WEBSOCKET /ws", "the app's lifespan"
    entered_by: "asyncio.Task[Any] | None"  # the task that called the app
    scope: dict[str, Any] = field(default_factory=dict, compare=False)

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


# --- where: the project's frames, innermost first ------------------------------------------


def _in_project(filename: str) -> bool:
    path = Path(filename)
    return (
        path.is_relative_to(PROJECT)
        and path != Path(__file__)
        and not {".venv", "site-packages"} & set(path.parts)
    )


def _in_app(filename: str) -> bool:
    return _in_project(filename) and not Path(filename).is_relative_to(PROJECT / "tests")


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
    return "\n".join(lines)


def _advice(problem: "Problem", cpu_bound: bool) -> str:
    what, stack = problem.what, problem.stack
    files = [frame.filename.replace("\\", "/") for frame in stack]
    own = any(_in_app(filename) for filename in files)
    if what.startswith("import "):
        return "Import modules at the top of the file: an import reads files and runs code."
    if what.startswith("ssl.SSLContext"):
        return (
            "Making an HTTP client loads the certificate store: share the app's client "
            "(HttpClientDep, opened by the lifespan) instead of making one per request."
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
            "`def` handler: cap the body size (the bake's MAX_REQUEST_BODY_BYTES), not the "
            "handler."
        )
    if cpu_bound:
        return (
            "CPU work holds the loop: run it in the process pool (`await pool.run(func, ...)`) "
            "or make the handler a plain `def`."
        )
    if not own:
        return (
            "No frame of the project is in the culprit's stack: a library blocked. If it is a "
            "one-time cost, pay it before the tests (a session fixture); else move the call off "
            "the loop with `await run_in_thread(func, ...)`."
        )
    return (
        "Use an async API, or move the call off the loop with app.core.concurrency "
        "(`await run_in_thread(func, ...)`), or make the handler a plain `def`."
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


def _report(problems: list[Problem]) -> str:
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
        lines.append(f"  Fix: {_advice(first, cpu_bound)}")
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


# Blocking primitives of the standard library that blockbuster leaves out, by kind:
# (name, predicate telling when a call cannot block).
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
    # child processes: waiting for one, or starting a shell
    *[(f"os.{name}", _wait_returns_at_once) for name in ("waitpid", "wait4", "waitid")],
    *[(f"os.{name}", _always_blocks) for name in ("wait", "wait3", "system")],
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
    # psycopg2 waits for the server inside C: only these calls show it
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
]

# Library code that blocks briefly, by design, on the loop: (file, functions it may block in).
ALLOWED = [
    # FastAPI reads an endpoint's source file once, to name it in error messages.
    ("fastapi/routing.py", {"_extract_endpoint_context"}),
    # asyncpg looks for ~/.pgpass and client certificates when it opens a connection.
    ("asyncpg/connect_utils.py", {"_read_password_file", "_parse_connect_dsn_and_args"}),
    # Submitting to a process pool writes one wake-up byte to the pool's pipe.
    ("concurrent/futures/process.py", {"submit"}),
    # Jinja2 reads a template once, then checks its modification time on each render.
    ("jinja2/loaders.py", {"get_source", "uptodate"}),
]


def _open_an_http_client() -> None:
    httpx.Client().close()  # the first client imports and loads its TLS machinery


# One-time costs of libraries, paid before the tests rather than forgiven during them.
WARM_UPS: list[Callable[[], object]] = [
    mimetypes.init,  # FileResponse and StaticFiles guess types from the system's mime files
    _open_an_http_client,
]


def _rules() -> BlockBuster:
    detector = BlockBuster()
    for name, can_not_block in MORE_RULES:
        with contextlib.suppress(ImportError, AttributeError):  # e.g. psycopg2 not installed
            function = BlockBusterFunction(None, name, can_block_predicate=can_not_block)
            if function.original_func is not None:
                detector.functions[name] = function
    for function in detector.functions.values():
        for filename, functions in ALLOWED:
            function.can_block_in(filename, functions)
    return detector


def _runner_logs(frame: FrameType | None) -> bool:
    """Whether pytest's own log handlers make this call (its log file, live logging): the test
    runner's writes, not the app's, whichever logger the app used."""
    while frame is not None:
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
        while frame is not None and frame.f_code.co_filename.startswith("<frozen importlib"):
            frame = frame.f_back  # type: ignore[assignment]
        if frame is not None and _in_project(frame.f_code.co_filename):
            self.guard.blocking_call(f"import {fullname}", frame)
        return None


# --- stalls ----------------------------------------------------------------------------------


@dataclass
class _Running:
    """The callback the loop runs now, and the time it spends in the app (not in the test)."""

    handle: asyncio.Handle
    thread: int
    culprit: Culprit | None = None
    app_since: float | None = None  # when the app's open stretch of this callback began
    marks: tuple[float, float, float] = (0.0, 0.0, 0.0)  # CPU, GC, starved at that time
    wall: float = 0.0
    cpu: float = 0.0
    starved: float = 0.0
    sample: list[Any] | None = None  # the stack, sampled while the app held the loop


class StallMonitor:
    """Times the app's share of every callback any asyncio loop runs; a watchdog thread samples
    the long ones.

    The watchdog wakes every tenth of the limit. When the machine keeps the process off the CPU,
    the watchdog wakes late too: its lateness during a callback is time the callback did not
    use, and is not counted against it.
    """

    def __init__(self, limit: float, on_stall: Callable[[Problem], None]) -> None:
        self.limit = limit
        self.on_stall = on_stall
        self.armed = False
        self.slowest = 0.0  # the longest judged callback of the app (seconds)
        self.noisy: list[float] = []  # wall times of callbacks excused as machine noise
        self._running: _Running | None = None
        self._gc_seconds = 0.0
        self._gc_started = 0.0
        self._tick = limit / 10
        self._clock = (0.0, time.perf_counter() + self._tick)  # watchdog: (late, next wake)
        self._original_run: Callable[[asyncio.Handle], None] = asyncio.Handle._run
        self._stop = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name="loop-guard", daemon=True)

    def start(self) -> None:
        monitor, original_run = self, self._original_run

        def timed_run(handle: asyncio.Handle) -> None:
            monitor._timed(handle, original_run)

        asyncio.Handle._run = timed_run  # type: ignore[method-assign,assignment]
        gc.callbacks.append(self._on_gc)
        self._watchdog.start()

    def stop(self) -> None:
        self._stop.set()
        self._watchdog.join()
        gc.callbacks.remove(self._on_gc)
        asyncio.Handle._run = self._original_run  # type: ignore[method-assign,assignment]

    def enter_app(self, culprit: Culprit) -> None:
        """The test's code called the app, or got the loop back from its own side of it."""
        running = self._running
        if running is not None and running.app_since is None:
            self._open(running, culprit)

    def leave_app(self) -> None:
        running = self._running
        if running is not None and running.app_since is not None:
            self._close(running)

    def _starved(self) -> float:
        """How late the watchdog is, in total: time this process could not run."""
        late, next_wake = self._clock
        return late + max(0.0, time.perf_counter() - next_wake)

    def _open(self, running: _Running, culprit: Culprit) -> None:
        running.culprit = culprit
        running.marks = (time.thread_time(), self._gc_seconds, self._starved())
        running.app_since = time.perf_counter()

    def _close(self, running: _Running) -> None:
        assert running.app_since is not None
        cpu, collected, starved = running.marks
        collecting = self._gc_seconds - collected  # the interpreter's time, not the code's
        running.wall += time.perf_counter() - running.app_since - collecting
        running.cpu += time.thread_time() - cpu - collecting
        running.starved += self._starved() - starved
        running.app_since = None

    def _timed(self, handle: asyncio.Handle, run: Callable[[asyncio.Handle], None]) -> None:
        if not self.armed:
            run(handle)
            return
        context = handle._context  # type: ignore[attr-defined]
        running = self._running = _Running(handle, threading.get_ident())
        if (culprit := context.get(_culprit)) is not None:
            self._open(running, culprit)
        try:
            run(handle)
        finally:
            self._running = None
            if running.app_since is not None:
                self._close(running)
            if running.culprit is not None and context.get(_excuse) is None:
                self._judge(running)

    def _judge(self, running: _Running) -> None:
        assert running.culprit is not None
        judged = max(running.cpu, running.wall - running.starved)
        if judged <= self.limit:
            self.slowest = max(self.slowest, judged)
            if running.wall > self.limit:
                self.noisy.append(running.wall)
            return
        owner = getattr(getattr(running.handle, "_callback", None), "__self__", None)
        task = owner if isinstance(owner, asyncio.Task) else None
        stack = traceback.StackSummary.from_list(reversed(running.sample or []))
        what = (
            f"the event loop was blocked for {judged * 1000:.0f} ms "
            f"({running.cpu * 1000:.0f} ms of it computing)"
        )
        culprit = running.culprit
        self.on_stall(
            Problem(
                what,
                culprit.name(task),
                stack,
                running.cpu > judged / 2,
                culprit.handler(),
                culprit.body_bytes(),
            )
        )

    def _watch(self) -> None:
        """Track its own lateness; while a callback runs past half the limit, sample it."""
        while not self._stop.wait(self._tick):
            now = time.perf_counter()
            late, next_wake = self._clock
            self._clock = (late + max(0.0, now - next_wake), now + self._tick)
            running = self._running
            since = running.app_since if running is not None else None
            if running is None or since is None or running.sample or now - since < self.limit / 2:
                continue
            frame = sys._current_frames().get(running.thread)
            if frame is None:
                continue
            # No I/O here (no source lines): it would let the stalled thread run on meanwhile.
            stack = [
                (f.f_code.co_filename, f.f_lineno, f.f_code.co_name, None)
                for f, _ in traceback.walk_stack(frame)
            ]
            if running.app_since is not None:  # still in the app: the stack is the culprit's
                running.sample = stack

    def _on_gc(self, phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self._gc_seconds += time.perf_counter() - self._gc_started


# --- the guard: one per run, on config.stash -------------------------------------------------


class LoopGuard:
    def __init__(self, stall_limit: float, settle: float) -> None:
        self.settle = settle
        self.problems: list[Problem] = []
        self.monitor = StallMonitor(stall_limit, self.problems.append)
        self.calls = _rules()
        self.spawned: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()
        self._loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
        self._warmed: weakref.WeakSet[Starlette] = weakref.WeakSet()
        self._rebound: list[tuple[ModuleType, str, object]] = []
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
        for module, name, original in self._rebound:
            setattr(module, name, original)
        self.calls.deactivate()

    def blocking_call(self, call: str, frame: FrameType | None) -> None:
        """Record a blocking call made on this thread, if the app made it on a loop."""
        culprit = _culprit.get()
        if not self.armed or culprit is None or _excuse.get() is not None:
            return
        try:
            task = asyncio.current_task()
        except RuntimeError:
            return  # no loop runs in this thread: blocking is fine here
        stack = traceback.extract_stack(frame)
        what = f"{call} on the event loop"
        self.problems.append(
            Problem(what, culprit.name(task), stack, False, culprit.handler(), culprit.body_bytes())
        )

    def _judging(self, function: BlockBusterFunction) -> Callable[..., bool]:
        """blockbuster's predicate, made to record the app's blocking calls and never raise."""
        cannot_block = function.can_block_predicate

        def predicate(*args: Any, **kwargs: Any) -> bool:
            if self.armed and _culprit.get() is not None and not cannot_block(*args, **kwargs):
                frame = sys._getframe(2)  # the caller of blockbuster's wrapper
                allowed = _allowed_by(function.can_block_functions, frame) or _runner_logs(frame)
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
        """`from time import sleep` in a module imported before the guard: point it at the rule."""
        wrapped = {
            id(function.original_func): function
            for function in self.calls.functions.values()
            if isinstance(function.module, ModuleType)
        }
        for module in list(sys.modules.values()):
            filename = getattr(module, "__file__", None)
            if not filename or not _in_project(filename):
                continue
            for name, value in list(vars(module).items()):
                function = wrapped.get(id(value))
                if function is not None and value is function.original_func:
                    self._rebound.append((module, name, value))
                    setattr(module, name, getattr(function.module, function.func_name))

    def _judged_app_call(self) -> Callable[..., Awaitable[None]]:
        guard, app_call = self, self._app_call

        async def judged_call(app: Starlette, scope: Any, receive: Any, send: Any) -> None:
            if _culprit.get() is not None:  # a mounted app, inside one already judged
                await app_call(app, scope, receive, send)
                return
            guard._prepare(app)
            culprit = Culprit(_label(scope), asyncio.current_task(), scope)
            token = _culprit.set(culprit)
            guard.monitor.enter_app(culprit)
            try:
                await app_call(app, scope, guard.unjudged(receive), guard.unjudged(send))
            finally:
                guard.monitor.leave_app()
                _culprit.reset(token)

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

    def settle_spawned_tasks(self) -> None:
        """Let the tasks a test's requests spawned finish while the test is still judged."""
        pending = [task for task in self.spawned if not task.done()]
        self.spawned = weakref.WeakSet()
        loop = pending[0].get_loop() if pending else None
        if loop is not None and not loop.is_running() and not loop.is_closed():
            loop.run_until_complete(asyncio.wait(pending, timeout=self.settle))

    @contextlib.contextmanager
    def judging(self, item: pytest.Item, phase: str) -> Iterator[None]:
        """Judge one phase of a test; report what the app blocked, once, in place of the rest."""
        self.problems.clear()
        self.monitor.armed = item.get_closest_marker("allow_blocking") is None
        failure: Exception | None = None
        try:
            yield
        except Exception as error:  # the test's own failure: reported after the guard's
            failure = error
        finally:
            with contextlib.suppress(Exception):
                self.settle_spawned_tasks()
            self.monitor.armed = False
        if self.problems:
            also = f"\n\n(The test also failed: {failure!r})" if failure else ""
            pytest.fail(
                f"{item.nodeid} blocked the event loop ({phase}):\n\n"
                + _report(self.problems)
                + "\n\nExcuse blocking that is meant: `with allow_blocking(reason=...)` around "
                "one call of a test, or @pytest.mark.allow_blocking(reason=...) on a test "
                f"(tests/loop_guard.py).{also}",
                pytrace=False,
            )
        if failure is not None:
            raise failure


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
    guard = LoopGuard(_setting(config, "stall_limit"), _setting(config, "settle"))
    config.stash[guard_key] = guard
    guard.start()


def pytest_unconfigure(config: pytest.Config) -> None:
    guard = config.stash.get(guard_key, None)
    if guard is not None:
        guard.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
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
