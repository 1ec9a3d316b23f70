"""What the lifespan opens for the app's lifetime, in one typed object: the machinery's
(`CoreResources`: the database, the HTTP client, the CPU workers), the settings, and your own.

Handlers reach it through the dependencies of `app/api/deps.py`; `resources_of(app)` reads it
back. Here the settings become the values each part of the machinery takes.
"""

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import anyio.to_thread
from starlette.applications import Starlette

from app.core.concurrency import CpuWorkers, open_process_pool
from app.core.db.engine import DatabaseOptions, open_database
from app.core.http import open_http_client
from app.core.resources import CoreResources
{%- if cookiecutter.task_queue == "celery" %}
from app.core.task_queue import open_task_queue
{%- endif %}
from app.settings import Settings


@dataclass(frozen=True)
class Resources(CoreResources):
    settings: Settings


def resources_of(app: Starlette) -> Resources:
    """The app's resources, while its lifespan runs."""
    resources: Resources = app.state.resources
    return resources


def database_options(settings: Settings) -> DatabaseOptions:
    return DatabaseOptions(
        url=settings.database_url,
        pool_size=settings.db_pool_size,
        pool_timeout=settings.db_pool_timeout,
        connect_timeout=settings.db_connect_timeout,
        statement_timeout=settings.db_statement_timeout,
    )


def open_cpu_workers(settings: Settings) -> AbstractAsyncContextManager[CpuWorkers]:
{%- if cookiecutter.task_queue == "celery" %}
    """The process pool, or with CPU_BACKEND=celery the task queue, for CPU-bound jobs."""
{%- else %}
    """The process pool, for CPU-bound jobs."""
{%- endif %}
    workers, queue_size = settings.cpu_workers, settings.cpu_queue_size
    time_limit = settings.cpu_job_timeout
{%- if cookiecutter.task_queue == "celery" %}
    if settings.cpu_backend == "celery":
        return open_task_queue(
            settings.celery_broker_url,
            workers=workers,
            queue_size=queue_size,
            time_limit=time_limit,
        )
{%- endif %}
    return open_process_pool(workers, queue_size=queue_size, time_limit=time_limit)


@asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[Resources]:
    """Open the database, the HTTP client and the CPU workers, and size the worker threads;
    release them all after."""
    threads = anyio.to_thread.current_default_thread_limiter()
    threads_before, threads.total_tokens = threads.total_tokens, settings.worker_threads
    try:
        async with (
            open_database(database_options(settings)) as database,
            open_http_client(
                call_timeout=settings.http_timeout,
                max_connections=settings.http_max_connections,
                max_keepalive_connections=settings.http_max_keepalive_connections,
            ) as http_client,
            open_cpu_workers(settings) as cpu_workers,
        ):
            yield Resources(
                database=database,
                http_client=http_client,
                cpu_workers=cpu_workers,
                settings=settings,
            )
    finally:
        threads.total_tokens = threads_before
