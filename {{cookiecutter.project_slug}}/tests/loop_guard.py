"""A pytest plugin that fails every test during which the event loop was blocked.

One thread runs the event loop; while a callback on it blocks (a `time.sleep`, a sync database
driver, a CPU-bound loop inside `async def`), every other request waits. Two detectors watch
every test, with no fixture to request:

- Call level (blockbuster): a known blocking call made on the event loop's thread raises
  `BlockingError` at once, with a stack pointing at the caller. Beyond blockbuster's own rules
  (sleeps, file and socket I/O, sqlite3, locks), psycopg2 and any sync SQLAlchemy engine count
  as blocking. Errors that the code under test catches and swallows are still reported.
- Lag level: every callback the loop runs is timed. One that holds the loop longer than
  `LOOP_STALL_LIMIT` seconds fails the test, whatever it did: this sees blocking inside C
  extensions and pure CPU work, which no call-level rule can. A stall is confirmed only if it
  happens again when the test is run again (up to `LOOP_STALL_ATTEMPTS` runs), so a machine
  that is busy with something else does not fail the suite.

A test that must block the loop opts out with `@pytest.mark.allow_blocking(reason="...")`.
"""

import asyncio
import contextlib
import gc
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from blockbuster import BlockBuster, BlockingError
from blockbuster import blockbuster as blockbuster_module
from sqlalchemy import Engine, event

# A 100 ms stall always measures at least 100 ms; correct code stays far below this limit.
STALL_LIMIT = float(os.environ.get("LOOP_STALL_LIMIT", "0.08"))
STALL_ATTEMPTS = int(os.environ.get("LOOP_STALL_ATTEMPTS", "3"))

PROJECT = Path(__file__).resolve().parents[1]
HOW_TO_FIX = (
    "Blocking code in an `async def` function, dependency or middleware stalls every request. "
    "Use an async API, or move the work off the loop with app.core.concurrency: "
    "`await run_in_thread(func, ...)` for blocking calls, `await pool.run(func, ...)` for CPU "
    "work (or make the handler a plain `def`). A test that must block can say so with "
    "@pytest.mark.allow_blocking(reason=...)."
)


# --- where: the culprit frame and the request being served -------------------------------


def _in_project(filename: str) -> bool:
    path = Path(filename)
    return (
        path.is_relative_to(PROJECT)
        and path != Path(__file__)
        and not {".venv", "site-packages"} & set(path.parts)
    )


def _request_of(frame: FrameType | None) -> str | None:
    """The HTTP request being served by this stack, from the ASGI `scope` of a frame in it."""
    while frame is not None:
        scope = frame.f_locals.get("scope")
        if isinstance(scope, dict) and scope.get("type") == "http":
            return f"{scope.get('method')} {scope.get('path')}"
        frame = frame.f_back
    return None


def _describe(stack: traceback.StackSummary) -> str:
    """The project's own frames, innermost (the culprit) first; else the innermost frame."""
    own = [frame for frame in stack if _in_project(frame.filename)]
    if not own:
        return "".join(stack.format()[-1:]).rstrip()
    lines = []
    for depth, frame in enumerate(reversed(own[-4:])):
        where = Path(frame.filename).relative_to(PROJECT)
        lead = "at" if depth == 0 else "called from"
        lines.append(f"  {lead} {where}:{frame.lineno} in {frame.name}: {frame.line}")
    return "\n".join(lines)


# --- call level ----------------------------------------------------------------------------


@dataclass
class BlockingCall:
    call: str
    request: str | None
    stack: traceback.StackSummary

    def describe(self) -> str:
        during = f" during {self.request}" if self.request else ""
        return f"{self.call} on the event loop{during}\n{_describe(self.stack)}"


_blocking_calls: list[BlockingCall] = []


class _RecordedBlockingError(BlockingError):
    """blockbuster's error, also recorded: code under test may catch and swallow it."""

    def __init__(self, func: str) -> None:
        super().__init__(func)
        frame = sys._getframe(1)
        _blocking_calls.append(
            BlockingCall(func, _request_of(frame), traceback.extract_stack(frame))
        )


def _raise_if_on_event_loop(call: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return  # a worker thread: blocking is fine there
    raise _RecordedBlockingError(call)


def _sync_engine_on_the_loop(conn: Any, *_args: Any) -> None:
    # An AsyncEngine runs its sync core on the loop thread too, without blocking: skip it.
    if not conn.dialect.is_async:
        _raise_if_on_event_loop(f"a sync SQLAlchemy engine ({conn.dialect.driver})")


# Library code that blocks briefly, by design, on the loop: (file, functions) it may block in.
ALLOWED = [
    # FastAPI reads an endpoint's source file once, to name it in error messages.
    ("fastapi/routing.py", {"_extract_endpoint_context"}),
    # asyncpg looks for ~/.pgpass and client certificates when it opens a connection.
    ("asyncpg/connect_utils.py", {"_read_password_file", "_parse_connect_dsn_and_args"}),
    # Submitting to a process pool writes one wake-up byte to the pool's pipe.
    ("concurrent/futures/process.py", {"submit"}),
]


def _blockbuster() -> BlockBuster:
    """blockbuster's rules, with sync database drivers added and known false alarms allowed."""
    detector = BlockBuster()
    for name in ("psycopg2.connect", "psycopg2.extensions.cursor.execute"):
        with contextlib.suppress(ImportError):  # no psycopg2 installed: nothing to watch
            detector.functions[name] = blockbuster_module.BlockBusterFunction(None, name)
    for function in detector.functions.values():
        for filename, functions in ALLOWED:
            function.can_block_in(filename, functions)
    return detector


@pytest.fixture(scope="session")
def _call_detector() -> Iterator[BlockBuster]:
    """blockbuster, patched once per run; it raises only while a test has armed it."""
    blockbuster_module.BlockingError = _RecordedBlockingError  # type: ignore[misc]
    event.listen(Engine, "before_cursor_execute", _sync_engine_on_the_loop)
    yield _blockbuster()
    event.remove(Engine, "before_cursor_execute", _sync_engine_on_the_loop)
    blockbuster_module.BlockingError = BlockingError  # type: ignore[misc]


# --- lag level -----------------------------------------------------------------------------


def _callback_name(handle: asyncio.Handle) -> str:
    """What a callback was: for a task's step, the coroutine the task runs."""
    owner = getattr(getattr(handle, "_callback", None), "__self__", None)
    if isinstance(owner, asyncio.Task):
        return f"a step of the task running {owner.get_coro().__qualname__}()"  # type: ignore[union-attr]
    return repr(handle)


@dataclass
class Stall:
    seconds: float
    callback: str
    request: str | None = None
    stack: traceback.StackSummary = field(default_factory=traceback.StackSummary)

    def describe(self) -> str:
        during = f" during {self.request}" if self.request else ""
        where = _describe(self.stack) or (
            f"  in {self.callback} (no stack: the loop's thread held the GIL throughout)"
        )
        return f"the event loop was blocked for {self.seconds * 1000:.0f} ms{during}\n{where}"


class StallMonitor:
    """Times every callback run by any asyncio event loop, and samples the stack of long ones.

    Time spent in garbage collection is not counted: it is the interpreter's, not the code's.
    """

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.armed = False  # time callbacks only while a guarded test runs
        self.stalls: list[Stall] = []
        self.slowest = 0.0  # the longest callback seen in any guarded test, for the summary
        self._running: tuple[asyncio.Handle, float, int] | None = None  # handle, start, thread
        self._sampled: dict[int, tuple[str | None, list[tuple[str, int, str, None]]]] = {}
        self._gc_seconds = 0.0
        self._gc_started = 0.0
        self._original_run: Callable[[asyncio.Handle], None] = asyncio.Handle._run
        self._stop = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name="loop-guard", daemon=True)

    def __enter__(self) -> "StallMonitor":
        monitor, original_run = self, self._original_run

        def timed_run(handle: asyncio.Handle) -> None:
            monitor._timed(handle, original_run)

        asyncio.Handle._run = timed_run  # type: ignore[method-assign,assignment]
        gc.callbacks.append(self._on_gc)
        self._watchdog.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._watchdog.join()
        gc.callbacks.remove(self._on_gc)
        asyncio.Handle._run = self._original_run  # type: ignore[method-assign,assignment]

    def _timed(self, handle: asyncio.Handle, run: Callable[[asyncio.Handle], None]) -> None:
        if not self.armed:
            run(handle)
            return
        gc_before, start = self._gc_seconds, time.perf_counter()
        self._running = (handle, start, threading.get_ident())
        try:
            run(handle)
        finally:
            self._running = None
            seconds = time.perf_counter() - start - (self._gc_seconds - gc_before)
            sampled = self._sampled.pop(id(handle), None)
            self.slowest = max(self.slowest, seconds)
            if seconds > self.limit:
                request, frames = sampled or (None, [])
                stack = traceback.StackSummary.from_list(reversed(frames))
                self.stalls.append(Stall(seconds, _callback_name(handle), request, stack))

    def _watch(self) -> None:
        """While a callback runs past half the limit, record where its thread is."""
        while not self._stop.wait(self.limit / 10):
            running = self._running
            if running is None:
                continue
            handle, start, thread = running
            if id(handle) in self._sampled or time.perf_counter() - start < self.limit / 2:
                continue
            frame = sys._current_frames().get(thread)
            if frame is None:
                continue
            # No I/O here (no source lines): it would let the stalled thread run on meanwhile.
            stack = [
                (f.f_code.co_filename, f.f_lineno, f.f_code.co_name, None)
                for f, _ in traceback.walk_stack(frame)
            ]
            request = _request_of(frame)
            if self._running is running:
                self._sampled[id(handle)] = (request, stack)

    def _on_gc(self, phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self._gc_seconds += time.perf_counter() - self._gc_started


_slowest_seen = [0.0]  # across monitors: pytest may tear down and set up session fixtures again


@pytest.fixture(scope="session")
def _stall_monitor() -> Iterator[StallMonitor]:
    with StallMonitor(STALL_LIMIT) as monitor:
        yield monitor
    _slowest_seen[0] = max(_slowest_seen[0], monitor.slowest)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _slowest_seen[0]:
        terminalreporter.write_line(
            f"event loop guard: slowest loop callback {_slowest_seen[0] * 1000:.1f} ms "
            f"(limit {STALL_LIMIT * 1000:.0f} ms)"
        )


# --- wiring: every test is watched ---------------------------------------------------------


class LoopBlockedError(AssertionError):
    """A test made a blocking call on the event loop."""


class LoopStalledError(AssertionError):
    """A test held the event loop too long, in every attempt."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "allow_blocking(reason): this test may block the event loop (not checked)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A stall fails a test only if it happens again in every one of STALL_ATTEMPTS runs."""
    for item in items:
        if not item.get_closest_marker("allow_blocking") and not item.get_closest_marker("flaky"):
            rerun = pytest.mark.flaky(reruns=STALL_ATTEMPTS - 1, only_rerun=[LoopStalledError])
            item.add_marker(rerun)


@pytest.fixture(autouse=True)
def _loop_guard(
    request: pytest.FixtureRequest, _call_detector: BlockBuster, _stall_monitor: StallMonitor
) -> Iterator[None]:
    if request.node.get_closest_marker("allow_blocking"):
        yield
        return
    _blocking_calls.clear()
    _stall_monitor.stalls.clear()
    _call_detector.activate()
    _stall_monitor.armed = True
    try:
        yield
    finally:
        _stall_monitor.armed = False
        _call_detector.deactivate()
    problems = [call.describe() for call in _blocking_calls]
    problems += [stall.describe() for stall in _stall_monitor.stalls]
    if problems:
        error = LoopBlockedError if _blocking_calls else LoopStalledError
        raise error(
            f"{request.node.nodeid} blocked the event loop:\n\n"
            + "\n\n".join(problems)
            + f"\n\n{HOW_TO_FIX}"
        )
