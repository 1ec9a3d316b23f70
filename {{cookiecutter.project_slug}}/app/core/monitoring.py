"""What the lifespan runs to watch the app in production: the stall monitor, and the metrics
sampled from the app's pools once a second (see app.core.stalls and app.core.metrics)."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.to_thread
from sqlalchemy.pool import QueuePool

from app.core import metrics
from app.core.middleware.request_context import RequestsInFlight
from app.core.resources import CoreResources
from app.core.stalls import Stall, StallMonitor

logger = logging.getLogger(__name__)


def _sample_pools(resources: CoreResources) -> None:
    threads = anyio.to_thread.current_default_thread_limiter()
    metrics.THREADS_IN_USE.set(threads.borrowed_tokens)
    pool = resources.database.engine.pool
    if isinstance(pool, QueuePool):
        metrics.DB_CONNECTIONS_IN_USE.set(pool.checkedout())
        metrics.DB_OVERFLOW.set(max(0, pool.overflow()))  # negative while below DB_POOL_SIZE
    metrics.DB_WAITERS.set(resources.database.slots.statistics().tasks_waiting)
    running, queued = resources.cpu_workers.jobs()
    metrics.CPU_JOBS_RUNNING.set(running)
    metrics.CPU_JOBS_QUEUED.set(queued)


def _count_stall(_: Stall) -> None:
    metrics.LOOP_STALLS.inc()


def _count_starvation(_: float) -> None:
    metrics.LOOP_STARVATIONS.inc()


def _ignore(*_: object) -> None:
    pass


@asynccontextmanager
async def watching(
    resources: CoreResources,
    in_flight: RequestsInFlight,
    *,
    stall_threshold: float,
    report_stalls: bool,
    with_metrics: bool,
    web_concurrency: int,
) -> AsyncIterator[None]:
    """Run the stall monitor's heartbeat while the block runs: it logs stalls longer than
    `stall_threshold` seconds (if `report_stalls`) and feeds the metrics (if `with_metrics`)."""
    if not (report_stalls or with_metrics):
        yield
        return
    if with_metrics and web_concurrency > 1 and not metrics.MULTIPROCESS:
        logger.warning(
            "WEB_CONCURRENCY is %d but PROMETHEUS_MULTIPROC_DIR is not set: /metrics shows the "
            "figures of whichever worker answers it, not their sum",
            web_concurrency,
        )
    monitor = StallMonitor(
        stall_threshold,
        on_lag=metrics.LOOP_LAG.observe if with_metrics else _ignore,
        on_stall=_count_stall if with_metrics else _ignore,
        on_starved=_count_starvation if with_metrics else _ignore,
        on_tick=(lambda: _sample_pools(resources)) if with_metrics else _ignore,
        in_flight=lambda: in_flight.count,
        report_stalls=report_stalls,
    )
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(monitor.run)
            yield
            tasks.cancel_scope.cancel()
    finally:
        metrics.process_exits()
