"""Run blocking and CPU-bound work without blocking the event loop.

One thread runs every `async def` handler, dependency and middleware of the app: while one of
them computes or waits on a blocking call, no other request makes progress. Pick by the work:

- Blocking calls (a sync SDK or HTTP client, file access, a C library that releases the GIL):
  `await run_in_thread(func, ...)` runs them in a worker thread.
- Pure-Python CPU work holds the GIL, so a thread would still slow the loop down: send it to the
  app's `ProcessPool`, `await pool.run(func, ...)` from `async def` code, or `pool.call(func, ...)`
  from `def` code (which FastAPI already runs in a worker thread). `func` and its arguments travel
  to another process: use module-level functions and picklable values.
- Plain `def` handlers and dependencies need neither for blocking calls: FastAPI runs them in its
  thread pool.
"""

import asyncio
import functools
import multiprocessing
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ProcessPoolExecutor, wait
from contextlib import asynccontextmanager
from typing import ParamSpec, TypeVar

import anyio
import anyio.to_thread

P = ParamSpec("P")
T = TypeVar("T")


async def run_in_thread(func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a blocking call in a worker thread and return (or raise) what it returns (or raises).

    Threads share the GIL: use this for calls that wait (I/O, sleeps, C code that releases the
    GIL), not for pure-Python computation.
    """
    return await anyio.to_thread.run_sync(functools.partial(func, *args, **kwargs))


def _ready() -> None:
    """Do nothing, in a worker: submitting it makes the pool start that worker."""


class ProcessPool:
    """A pool of worker processes for pure-Python CPU-bound work.

    Workers are started with `spawn`, never `fork`: a forked child would inherit the server's
    listening and client sockets. They are started up front by `open_process_pool`, so the first
    request pays no start-up cost. At most `workers` jobs run at once; further `run` calls wait
    on the event loop, where a cancelled request simply stops waiting.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor = ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn")
        )
        self._slots = anyio.CapacityLimiter(workers)

    async def run(self, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `func(*args, **kwargs)` in a worker process; for `async def` code."""
        async with self._slots:
            future = self._executor.submit(func, *args, **kwargs)
            return await asyncio.wrap_future(future)

    def call(self, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `func(*args, **kwargs)` in a worker process and wait; for `def` code only.

        It blocks the calling thread until the result is ready, so never call it on the event
        loop. Concurrency is bounded by the thread pool that runs the `def` code.
        """
        return self._executor.submit(func, *args, **kwargs).result()

    def start_workers(self) -> None:
        """Start every worker now (blocking: spawning processes takes a while)."""
        wait([self._executor.submit(_ready) for _ in range(self.workers)])

    def shutdown(self) -> None:
        """Cancel pending jobs, wait for running ones, stop the workers (blocking)."""
        self._executor.shutdown(wait=True, cancel_futures=True)


@asynccontextmanager
async def open_process_pool(workers: int) -> AsyncIterator[ProcessPool]:
    """Start a `ProcessPool` with all its workers, and shut it down on exit (for the lifespan)."""
    # Creating the pool and spawning its workers block: keep both off the event loop.
    pool = await run_in_thread(ProcessPool, workers)
    try:
        await run_in_thread(pool.start_workers)
        yield pool
    finally:
        await run_in_thread(pool.shutdown)
