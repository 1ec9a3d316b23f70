"""What the lifespan opens for the app's lifetime, in one typed object.

Handlers reach it through the dependencies of `app/api/deps.py`, the stall monitor and its
metrics through the lifespan; `resources_of(app)` is the one place that reads it back.
"""

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import anyio.to_thread
from starlette.applications import Starlette

from app.core.concurrency import CpuWorkers, open_process_pool
from app.core.http import HttpClient, open_http_client
{%- if cookiecutter.task_queue == "celery" %}
from app.core.task_queue import open_task_queue
{%- endif %}
from app.db.engine import Database, open_database
from app.settings import Settings


@dataclass(frozen=True)
class Resources:
    settings: Settings
    database: Database
    http_client: HttpClient
    cpu_workers: CpuWorkers


def resources_of(app: Starlette) -> Resources:
    """The app's resources, while its lifespan runs."""
    resources: Resources = app.state.resources
    return resources


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
            open_database(settings) as database,
            open_http_client(settings) as http_client,
            open_cpu_workers(settings) as cpu_workers,
        ):
            yield Resources(settings, database, http_client, cpu_workers)
    finally:
        threads.total_tokens = threads_before
