"""CPU-bound work on a Celery task queue (Redis), behind the process pool's interface.

With CPU_BACKEND=celery, `await pool.run(func, ...)` and `pool.call(func, ...)` send each job
to Celery workers, on this machine or others, instead of local worker processes: the call sites
do not change. The workers run `celery -A app.worker worker` (see the README), from the same
code, so `func` is one of this project's module-level functions: a worker imports it by name
and calls it with the arguments, which travel as JSON, as the result does (the contract of
app.core.concurrency, which the process pool checks too).

The admission rule is the process pool's: at most CPU_WORKERS + CPU_QUEUE_SIZE jobs of
a server process are in flight, and one more is refused at once (503). A job waits at most
CPU_JOB_TIMEOUT seconds for its result. A worker process that dies while it runs a job hands
the job back to the queue (late acknowledgement), so another worker runs it again; if no worker
answers in time, the request fails clearly rather than hanging, and the worker kills the job
(its time limit, and a revoke that terminates it, also when the client hangs up). A broker
that is down answers 503, as a database outage does.
"""

import importlib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import Any, ParamSpec, TypeVar

import anyio
import anyio.to_thread
from celery import Celery
from celery.exceptions import TimeLimitExceeded
from celery.exceptions import TimeoutError as ResultTimeoutError
from celery.result import AsyncResult
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from app.core.concurrency import (
    Admission,
    JobFailedError,
    check_arguments,
    check_function,
    run_in_thread,
    run_job,
)

P = ParamSpec("P")
T = TypeVar("T")

TASK = "app.run_function"
# What a broker that is down or unreachable raises: through kombu, the Redis client, or
# Celery's Redis result store, which gives up reconnecting with a RuntimeError.
BROKER_DOWN = (OperationalError, RedisError, OSError, RuntimeError)
RESULT_STORE_RETRIES = {"max_retries": 1}  # Celery's default, 20, takes 20 s to give up


def run_function(module: str, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """The one task: call this project's function `module.name` with the arguments."""
    if module.split(".")[0] != "app":
        raise ValueError(f"{module}.{name} is not this project's code")
    return run_job(getattr(importlib.import_module(module), name), args, kwargs)


def celery_app(broker_url: str) -> Celery:
    """The Celery app of the server processes and of the workers: Redis for jobs and results."""
    celery = Celery("app", broker=broker_url, backend=broker_url)
    celery.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        # A job is acknowledged when it is done, not when it starts: if its worker process
        # dies, the job goes back to the queue for another one.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # a worker process holds one job, never a backlog
        result_expires=3600,
        broker_connection_retry_on_startup=True,
        # A broker that is down fails the request at once (503), rather than after retries.
        task_publish_retry=False,
        broker_connection_timeout=3,
        result_backend_transport_options={"retry_policy": RESULT_STORE_RETRIES},
    )
    celery.task(name=TASK)(run_function)
    return celery


class TaskQueue:
    """The process pool's interface (`run`, `call`, `jobs`) over a Celery task queue."""

    def __init__(self, celery: Celery, *, workers: int, queue_size: int, time_limit: float):
        self.celery = celery
        self.workers = workers  # jobs counted as running; the others as queued
        self.time_limit = time_limit
        self._admission = Admission(workers, queue_size)

    async def run(self, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `func(*args, **kwargs)` on a worker; for `async def` code.

        Cancelling the caller (a client that hung up) revokes the job."""
        result = await run_in_thread(self._submit, func, args, kwargs)
        try:
            # Abandoned on cancellation: the thread gives up within CPU_JOB_TIMEOUT.
            value: T = await anyio.to_thread.run_sync(self._wait, result, abandon_on_cancel=True)
            return value
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await run_in_thread(stop, result)
            raise

    def call(self, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `func(*args, **kwargs)` on a worker and wait; for `def` code only (it blocks)."""
        result: T = self._wait(self._submit(func, args, kwargs))
        return result

    def jobs(self) -> tuple[int, int]:
        """Jobs of this process taken by workers (at most), and jobs waiting in the queue."""
        return self._admission.jobs()

    def _submit(
        self, func: Callable[..., object], args: tuple[object, ...], kwargs: dict[str, object]
    ) -> AsyncResult:
        # Checked here: JSON would turn a tuple into a list on its way to the worker, unseen.
        check_function(func)
        check_arguments(func, args, kwargs)
        self._admission.admit()
        try:
            name = f"{func.__module__}.{func.__qualname__}"
            # One task runs every job; `shadow` names each job after its function in the
            # worker's log and in monitoring (Flower, events), not "app.run_function".
            return self.celery.send_task(
                TASK,
                args=[func.__module__, func.__qualname__, list(args), kwargs],
                shadow=name,
                # The worker kills a job still running when its client has stopped waiting.
                time_limit=self.time_limit,
            )
        except BROKER_DOWN as error:
            self._admission.finished()
            raise JobFailedError(
                f"the task queue is unreachable ({type(error).__name__})"
            ) from None
        except BaseException:
            self._admission.finished()
            raise

    def _wait(self, result: AsyncResult) -> Any:
        try:
            with self._stopped_jobs_fail(result):
                return result.get(timeout=self.time_limit, propagate=True)
        finally:
            self._admission.finished()

    @contextmanager
    def _stopped_jobs_fail(self, result: AsyncResult) -> Iterator[None]:
        try:
            yield
        except (ResultTimeoutError, TimeLimitExceeded):  # our wait ran out, or the worker's
            stop(result)  # (the same limit) did first and killed the job: harmless then
            raise JobFailedError(
                f"no worker finished the job within {self.time_limit:g} s"
            ) from None
        except BROKER_DOWN as error:
            raise JobFailedError(
                f"the task queue is unreachable ({type(error).__name__})"
            ) from None


def stop(result: AsyncResult) -> None:
    """Revoke a job, and kill the worker process that runs it, if one does: revoking alone
    only drops a job that has not started."""
    with suppress(*BROKER_DOWN):
        result.revoke(terminate=True, signal="SIGKILL")


@asynccontextmanager
async def open_task_queue(
    broker_url: str, *, workers: int, queue_size: int, time_limit: float
) -> AsyncIterator[TaskQueue]:
    """A `TaskQueue` for the lifespan; its connections are closed on exit."""
    celery = celery_app(broker_url)
    try:
        yield TaskQueue(celery, workers=workers, queue_size=queue_size, time_limit=time_limit)
    finally:
        await run_in_thread(celery.close)
