"""Run blocking and CPU-bound work without blocking the event loop, and admit only what fits.

One thread runs every `async def` handler, dependency and middleware of the app: while one of
them computes or waits on a blocking call, no other request makes progress. Pick by the work:

- Blocking calls (a sync SDK or HTTP client, file access, a C library that releases the GIL):
  `await run_in_thread(func, ...)` runs them in a worker thread.
- Pure-Python CPU work holds the GIL, so a thread would still slow the loop down: send it to the
  app's CPU workers, `await pool.run(func, ...)` from `async def` code, or `pool.call(func, ...)`
  from `def` code (which FastAPI already runs in a worker thread).
- Plain `def` handlers and dependencies need neither for blocking calls: FastAPI runs them in its
  thread pool.

A CPU job keeps one contract: `func` is a module-level function, and its arguments and its
result are what JSON carries unchanged (numbers, strings, booleans, None, lists, and dicts with
string keys; no tuples, sets or objects). The process pool checks it, so a job that passes the
tests runs the same on a task queue's workers, which carry jobs as JSON; a job that breaks it
raises `JobContractError`.

Work that does not fit is refused, not queued without bound: a full CPU queue, or a wait for a
scarce resource longer than its timeout, raises `OverloadedError` (answered with 503 and
`Retry-After`), so a busy service stays responsive instead of piling up waiters.
"""

import asyncio
import functools
import json
import multiprocessing
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import ParamSpec, Protocol, TypeVar

import anyio
import anyio.to_thread
import pebble

P = ParamSpec("P")
T = TypeVar("T")


class OverloadedError(Exception):
    """The service is too busy to take this request now; the client may retry shortly."""


class JobFailedError(Exception):
    """A CPU job was stopped: it ran past its time limit, or its worker process died."""


class JobContractError(TypeError):
    """A CPU job broke the contract both backends keep (see the module's docstring): a bug."""


def check_function(func: Callable[..., object]) -> None:
    """Refuse a function a worker could not import by name: a lambda, a nested function, a
    method, or one defined in `__main__`."""
    module = sys.modules.get(func.__module__)
    if func.__module__ == "__main__" or getattr(module, func.__qualname__, None) is not func:
        raise JobContractError(
            f"{func.__qualname__} is not a module-level function: a CPU job's function must be "
            "importable by name (define it at the top level of a module under app/)"
        )


def _carried_by_json(value: object) -> bool:
    try:
        return bool(json.loads(json.dumps(value, allow_nan=False)) == value)
    except (TypeError, ValueError):
        return False


def run_job(func: Callable[..., T], args: Sequence[object], kwargs: dict[str, object]) -> T:
    """Run a CPU job where the backend runs it (a worker process, off the event loop), holding
    it to the contract: arguments and result must come through JSON unchanged."""
    check_arguments(func, args, kwargs)
    result = func(*args, **kwargs)
    if not _carried_by_json(result):
        raise JobContractError(
            f"{_name(func)} returned a {type(result).__name__}, which JSON does not carry "
            "unchanged: return numbers, strings, booleans, None, lists and dicts with string keys"
        )
    return result


def check_arguments(
    func: Callable[..., object], args: Sequence[object], kwargs: dict[str, object]
) -> None:
    if not _carried_by_json([*args]) or not _carried_by_json(kwargs):
        raise JobContractError(
            f"the arguments of {_name(func)} do not come through JSON unchanged: pass numbers, "
            "strings, booleans, None, lists and dicts with string keys"
        )


def _name(func: Callable[..., object]) -> str:
    return f"{func.__module__}.{func.__qualname__}"


# The process's own cgroup, as a container sees it.
CGROUP = Path("/sys/fs/cgroup")


def usable_cpus(cgroup: Path = CGROUP) -> int:
    """The CPUs this process may use: those it may run on (its affinity: `taskset`, cpusets),
    capped by a CPU quota (cgroup v2's `cpu.max`: `docker run --cpus`, Kubernetes limits)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpus = cpus or 1
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()
    except (OSError, ValueError):
        return cpus  # no cgroup v2 here
    if quota == "max":
        return cpus
    return max(1, min(cpus, int(quota) // int(period)))


async def run_in_thread(func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a blocking call in a worker thread and return (or raise) what it returns (or raises).

    Threads share the GIL: use this for calls that wait (I/O, sleeps, C code that releases the
    GIL), not for pure-Python computation.
    """
    return await anyio.to_thread.run_sync(functools.partial(func, *args, **kwargs))


@asynccontextmanager
async def acquire_or_overload(
    semaphore: anyio.Semaphore, max_wait: float, what: str
) -> AsyncIterator[None]:
    """Hold one of `semaphore`'s tokens; wait at most `max_wait` seconds for it, on the event loop.

    Waiting here holds no worker thread. Raises `OverloadedError` naming `what` on time-out.
    """
    try:
        semaphore.acquire_nowait()
    except anyio.WouldBlock:
        try:
            with anyio.fail_after(max_wait):
                await semaphore.acquire()
        except TimeoutError:
            raise OverloadedError(f"no {what} free within {max_wait:g} s") from None
    try:
        yield
    finally:
        semaphore.release()


def _ready() -> None:
    """Do nothing, in a worker: running it shows the worker has started."""


class Admission:
    """At most `workers + queue_size` jobs in flight; one more is refused at once."""

    def __init__(self, workers: int, queue_size: int) -> None:
        self.workers = workers
        self._slots = threading.BoundedSemaphore(workers + queue_size)
        self._in_flight = 0  # admitted and not finished: running, or waiting for a worker
        self._counting = threading.Lock()

    def admit(self) -> None:
        if not self._slots.acquire(blocking=False):
            raise OverloadedError("the CPU work queue is full")
        self._count(+1)

    def finished(self) -> None:
        self._count(-1)
        self._slots.release()

    def jobs(self) -> tuple[int, int]:
        """Jobs running (at most one a worker), and jobs waiting for a worker."""
        jobs = self._in_flight
        return min(jobs, self.workers), max(0, jobs - self.workers)

    def _count(self, change: int) -> None:
        with self._counting:
            self._in_flight += change


class CpuWorkers(Protocol):
    """Where CPU-bound jobs run: the local `ProcessPool`, or any backend with these methods (a
    task queue's workers). Call sites use only this."""

    workers: int

    async def run(self, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T: ...

    def call(self, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T: ...

    def jobs(self) -> tuple[int, int]: ...


class ProcessPool:
    """A pool of worker processes for pure-Python CPU-bound work, with admission control.

    `workers` jobs run at once and `queue_size` more may wait; a job beyond that is refused
    at once with `OverloadedError`. A job that runs longer than `time_limit` seconds (if set),
    or whose caller is cancelled, is stopped: its worker is killed and replaced, as is a worker
    that died. Later jobs are served by a fresh worker.

    Workers are started with `spawn`, never `fork` (a forked child would inherit the server's
    sockets), up front by `open_process_pool`, so the first request pays no start-up cost.
    """

    def __init__(self, workers: int, *, queue_size: int = 0, time_limit: float | None = None):
        self.workers = workers
        self.time_limit = time_limit
        self._admission = Admission(workers, queue_size)
        self._replacing = threading.Lock()
        self._pool = self._new_pool()

    def _new_pool(self) -> pebble.ProcessPool:
        return pebble.ProcessPool(self.workers, context=multiprocessing.get_context("spawn"))

    async def run(self, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `func(*args, **kwargs)` in a worker process; for `async def` code.

        Cancelling the caller (e.g. a request cancelled at shutdown) stops the job.
        """
        if not self._pool.active:
            await run_in_thread(self.replace_broken_pool)
        future = self._submit(func, args, kwargs)
        with self._stopped_jobs_fail():
            try:
                return await asyncio.wrap_future(future)
            except asyncio.CancelledError:
                future.cancel()  # a running job's worker is stopped
                raise

    def call(self, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `func(*args, **kwargs)` in a worker process and wait; for `def` code only.

        It blocks the calling thread until the result is ready, so never call it on the event
        loop. It raises `OverloadedError` at once, holding no thread, when the queue is full.
        """
        self.replace_broken_pool()
        with self._stopped_jobs_fail():
            return self._submit(func, args, kwargs).result()

    def _submit(
        self, func: Callable[..., T], args: tuple[object, ...], kwargs: dict[str, object]
    ) -> Future[T]:
        check_function(func)
        self._admission.admit()
        try:
            job = (func, args, kwargs)
            future = self._pool.schedule(run_job, job, timeout=self.time_limit)
        except BaseException:
            self._admission.finished()
            raise
        future.add_done_callback(lambda _: self._admission.finished())
        return future

    def jobs(self) -> tuple[int, int]:
        """Jobs running, and jobs waiting for a worker."""
        return self._admission.jobs()

    @contextmanager
    def _stopped_jobs_fail(self) -> Iterator[None]:
        """Raise `JobFailedError` for a job the pool stopped; the job's own errors pass."""
        try:
            yield
        except (pebble.ProcessExpired, BrokenProcessPool) as error:
            raise JobFailedError(f"the worker process running the job died ({error})") from None
        except TimeoutError as error:
            if error.args[:1] != ("Task timeout",):  # the job's own error, not the time limit
                raise
            raise JobFailedError(
                f"the job ran longer than {self.time_limit:g} s and was stopped"
            ) from None

    def replace_broken_pool(self) -> None:
        """Replace the pool if it broke (blocking: it starts new workers).

        A worker that dies while it runs a job is replaced by the pool itself; one that dies
        while idle leaves it broken (pebble gives up on the whole pool).
        """
        with self._replacing:
            if self._pool.active:
                return
            broken, self._pool = self._pool, self._new_pool()
            self.start_workers()
        broken.stop()  # type: ignore[no-untyped-call]
        broken.join()

    def start_workers(self) -> None:
        """Start every worker now (blocking: spawning processes takes a while)."""
        for future in [self._pool.schedule(_ready) for _ in range(self.workers)]:
            future.result()

    def shutdown(self) -> None:
        """Stop the workers, and with them any job still running (blocking)."""
        self._pool.stop()  # type: ignore[no-untyped-call]
        self._pool.join()


@asynccontextmanager
async def open_process_pool(
    workers: int, *, queue_size: int = 0, time_limit: float | None = None
) -> AsyncIterator[ProcessPool]:
    """Start a `ProcessPool` with all its workers, and shut it down on exit (for the lifespan)."""
    # Creating the pool and spawning its workers block: keep both off the event loop.
    pool = await run_in_thread(ProcessPool, workers, queue_size=queue_size, time_limit=time_limit)
    try:
        await run_in_thread(pool.start_workers)
        yield pool
    finally:
        await run_in_thread(pool.shutdown)
