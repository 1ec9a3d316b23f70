"""Watch the event loop in production: measure its lag, and report each stall with its culprit.

uvloop runs callbacks in C, so nothing can time them one by one. Instead a heartbeat is
scheduled on the loop every few milliseconds; how late it runs is the loop's lag. A watchdog
thread notices when the heartbeat is overdue and samples the loop thread's stack then, while
the culprit still runs (a `time.sleep`, a CPU-bound loop, a C extension that holds the GIL). When
the loop is back, the heartbeat logs one warning for the stall: how long, during which request,
and where, the project's own frames first. Further stalls at the same place within a minute are
counted, and summarised in one line when the minute is over, instead of flooding the log.

A loop can also be late because the machine did not run it: a CPU quota throttled the process,
or other work crowded the node. Linux counts, per thread, the time it was runnable but not
running (schedstat); when that explains the lag, it is logged as starvation, with no culprit
line: no line of the app is to blame.
"""

import asyncio
import itertools
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from app.core.logging import escaped

logger = logging.getLogger(__name__)

# The project's own code (app/): its frames are the ones a stall report leads with.
APP_DIR = Path(__file__).resolve().parents[1]


def request_name(scope: dict[str, object]) -> str:
    """`GET /api/v1/items/3 (request 1f0c...)`: how logs and stall reports name a request."""
    state = scope.get("state")
    request_id = state.get("request_id") if isinstance(state, dict) else None
    name = f"{scope.get('method', 'WEBSOCKET')} {escaped(str(scope.get('path')))}"
    return f"{name} (request {request_id})" if request_id else name


@dataclass
class Sample:
    """The loop thread's stack, taken while the loop was stalled."""

    stack: traceback.StackSummary
    request: str | None  # the request being served, if the stack is inside one
    in_flight: int  # requests the server had started and not yet answered


@dataclass
class Stall:
    seconds: float
    sample: Sample | None

    @property
    def place(self) -> str:
        """The innermost frame of the project, or else the innermost frame: the culprit."""
        if self.sample is None or not self.sample.stack:
            return "an unknown place (no stack sampled: C code held the GIL throughout)"
        frame = _project_frames(self.sample.stack)[:1] or self.sample.stack[-1:]
        return f"{_relative(frame[0].filename)}:{frame[0].lineno} in {frame[0].name}"

    def __str__(self) -> str:
        first = f"Event loop stalled for {self.seconds * 1000:.0f} ms at {self.place}"
        if self.sample is not None:
            during = self.sample.request or "no request"
            first += f", during {during}; {self.sample.in_flight} request(s) in flight"
        lines = [first]
        if self.sample is not None:
            own = _project_frames(self.sample.stack)
            library = [] if own and own[0] is self.sample.stack[-1] else self.sample.stack[-1:]
            for frame in [*library, *own]:
                code = f": {frame.line}" if frame.line else ""
                lines.append(f"  {_relative(frame.filename)}:{frame.lineno} in {frame.name}{code}")
        return "\n".join(lines)


def _project_frames(stack: traceback.StackSummary) -> list[traceback.FrameSummary]:
    """The project's frames, innermost first."""
    return [f for f in reversed(stack) if Path(f.filename).is_relative_to(APP_DIR)]


def _relative(filename: str) -> str:
    path = Path(filename)
    return str(path.relative_to(APP_DIR.parent)) if path.is_relative_to(APP_DIR) else filename


def _sample(frame: FrameType, in_flight: int) -> Sample:
    # Source lines are looked up when the report is written, not now: reading files would hand
    # the GIL back to the culprit, and the stall could end before the sample is taken.
    stack = traceback.StackSummary.extract(traceback.walk_stack(frame), lookup_lines=False)
    stack.reverse()
    request = None
    walk: FrameType | None = frame
    while walk is not None and request is None:  # innermost ASGI call: its scope
        scope = _scope_of(walk.f_locals)
        if scope is not None:
            request = request_name(scope)
        walk = walk.f_back
    return Sample(stack, request, in_flight)


def _is_scope(value: object) -> bool:
    return isinstance(value, dict) and value.get("type") in ("http", "websocket")


def _scope_of(names: dict[str, object]) -> dict[str, object] | None:
    """The request's scope, from a frame's `scope`, or through the `send` it writes to: a
    streaming body runs in a task of its own, whose frames hold no scope, but its `send` is the
    middleware's, which closes over it."""
    scope = names.get("scope")
    if _is_scope(scope):
        return scope  # type: ignore[return-value]
    chain: list[object] = [names.get("send")]  # the wrapped `send`s, each closing over the next
    for callable_ in itertools.islice(iter_growing(chain), 32):
        for cell in getattr(callable_, "__closure__", None) or ():
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            if _is_scope(value):
                return value  # type: ignore[no-any-return]
            if callable(value):
                chain.append(value)
    return None


def iter_growing(items: list[object]) -> Iterator[object]:
    """The items of a list that grows while it is iterated."""
    index = 0
    while index < len(items):
        yield items[index]
        index += 1


class _RunQueue:
    """A thread's time runnable but not running, in seconds (Linux's schedstat); None where the
    system does not say. One pread of a descriptor kept open: about a microsecond."""

    def __init__(self, native_thread_id: int) -> None:
        try:
            self._fd: int | None = os.open(
                f"/proc/self/task/{native_thread_id}/schedstat", os.O_RDONLY
            )
        except OSError:
            self._fd = None

    def __call__(self) -> float | None:
        if self._fd is None:
            return None
        try:
            return int(os.pread(self._fd, 128, 0).split()[1]) / 1e9
        except (OSError, IndexError, ValueError):
            return None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _difference(now: float | None, before: float | None) -> float:
    return now - before if now is not None and before is not None else 0.0


@dataclass
class _Storm:
    started: float
    more: int = 0
    longest: float = 0.0


class StallMonitor:
    """A heartbeat task on the event loop and its watchdog thread; `run()` in a task group."""

    def __init__(
        self,
        threshold: float,
        *,
        on_lag: Callable[[float], None],
        on_stall: Callable[[Stall], None],
        on_starved: Callable[[float], None],
        on_tick: Callable[[], None],
        in_flight: Callable[[], int],
        report_stalls: bool = True,
        storm_window: float = 60.0,
    ) -> None:
        self.threshold = threshold  # seconds the loop may be late before it counts as a stall
        self.on_lag = on_lag  # every heartbeat's lateness, in seconds
        self.on_stall = on_stall  # every stall, logged or not
        self.on_starved = on_starved  # every lag the machine caused, in seconds
        self.on_tick = on_tick  # about once a second, on the loop
        self.in_flight = in_flight
        self.report_stalls = report_stalls
        self.storm_window = storm_window
        # Short enough that a stall's length is measured to within a few milliseconds.
        self.interval = min(0.025, threshold / 4)
        self._due = time.monotonic()
        # The watchdog's latest sample, and the heartbeat it was overdue: set in one assignment.
        self._sample: tuple[float, Sample] | None = None
        self._storms: dict[str, _Storm] = {}

    async def run(self) -> None:
        """Beat until cancelled (at shut-down), with the watchdog watching."""
        loop_thread = threading.get_ident()
        run_queue = _RunQueue(threading.get_native_id())
        stopped = threading.Event()
        watchdog = threading.Thread(
            target=self._watch, args=(loop_thread, stopped), name="stall-watchdog", daemon=True
        )
        watchdog.start()
        ticks_per_second = round(1 / self.interval)
        stalled: tuple[float, float] | None = None  # (the heartbeat overdue, the lag)
        try:
            for beat in itertools.count(1):
                if stalled is not None:  # reported a beat later: the watchdog's sample is in
                    self._stalled(*stalled)
                    stalled = None
                self._due = time.monotonic() + self.interval
                queued = run_queue()
                await asyncio.sleep(self.interval)
                now = time.monotonic()
                lag = max(0.0, now - self._due)
                self.on_lag(lag)
                if lag < self.threshold:
                    pass
                elif (starved := _difference(run_queue(), queued)) > lag - self.threshold:
                    self._starved(lag, starved)  # the machine's doing: the app held less
                else:
                    stalled = (self._due, lag)
                if beat % ticks_per_second == 0:
                    self.on_tick()
                    self._summarise_storms(now)
        finally:
            stopped.set()
            run_queue.close()
            self._summarise_storms(float("inf"))

    def _starved(self, lag: float, starved: float) -> None:
        self.on_starved(lag)
        if self.report_stalls:
            logger.warning(
                "Event loop starved for %.0f ms: the process was ready to run for %.0f ms of it "
                "but the machine did not run it (a CPU quota, or a crowded node); no code of "
                "the app is to blame",
                lag * 1000,
                starved * 1000,
            )

    def _watch(self, loop_thread: int, stopped: threading.Event) -> None:
        """The watchdog: sample the loop thread's stack once per stall, while it lasts."""
        while not stopped.wait(self.interval):
            due, latest = self._due, self._sample
            if time.monotonic() - due < self.threshold / 2 or (latest and latest[0] == due):
                continue
            frame = sys._current_frames().get(loop_thread)
            if frame is not None:
                self._sample = (due, _sample(frame, self.in_flight()))

    def _stalled(self, due: float, lag: float) -> None:
        sample = self._sample[1] if self._sample and self._sample[0] == due else None
        stall = Stall(lag, sample)
        now = time.monotonic()
        self.on_stall(stall)
        if not self.report_stalls:
            return
        storm = self._storms.get(stall.place)
        if storm is not None:  # the same place stalled the loop within the window: count it
            storm.more += 1
            storm.longest = max(storm.longest, stall.seconds)
            return
        self._storms[stall.place] = _Storm(started=now)
        logger.warning("%s", stall)  # formatted (source lines read) by the logging thread

    def _summarise_storms(self, now: float) -> None:
        for place, storm in list(self._storms.items()):
            if now - storm.started < self.storm_window:
                continue
            del self._storms[place]
            if storm.more:
                logger.warning(
                    "Event loop stalled %d more time(s) at %s within %.0f s of the first "
                    "(longest %.0f ms)",
                    storm.more,
                    place,
                    self.storm_window,
                    storm.longest * 1000,
                )
