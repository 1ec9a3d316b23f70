"""`create_app(settings)`: the application and its lifespan, built from the settings given."""

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio
import anyio.to_thread
from fastapi import FastAPI
from starlette.middleware.trustedhost import TrustedHostMiddleware
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app.api.body_timeout import BodyTimeoutMiddleware
from app.api.errors import add_error_handlers
from app.api.request_context import RequestContextMiddleware, RequestsInFlight
from app.api.router import router
from app.api.routes import metrics
from app.api.security_headers import SecurityHeadersMiddleware
from app.core.concurrency import CpuWorkers, open_process_pool
from app.core.config import Settings
from app.core.http import open_http_client
from app.core.logging import logging_off_the_loop
from app.core.task_queue import open_task_queue
from app.db.session import open_database
from app.monitoring import watching


def open_cpu_workers(settings: Settings) -> AbstractAsyncContextManager[CpuWorkers]:
    """The process pool, or with CPU_BACKEND=celery the task queue, for CPU-bound jobs."""
    workers, queue_size = settings.process_pool_workers, settings.cpu_queue_size
    time_limit = settings.cpu_job_timeout
    if settings.cpu_backend == "celery":
        return open_task_queue(
            settings.celery_broker_url,
            workers=workers,
            queue_size=queue_size,
            time_limit=time_limit,
        )
    return open_process_pool(workers, queue_size=queue_size, time_limit=time_limit)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the database, the HTTP client and the process pool for the app's lifetime; release
    them after."""
    settings: Settings = app.state.settings
    # One ticket per pooled connection: a request waits for one on the event loop, holding no
    # thread, so requests that hold a connection always find a thread to finish on.
    app.state.connection_slots = anyio.Semaphore(settings.db_pool_size)
    threads = anyio.to_thread.current_default_thread_limiter()
    threads_before, threads.total_tokens = threads.total_tokens, settings.worker_threads
    async with (
        logging_off_the_loop(settings.log_level, settings.log_format),
        open_database(settings) as database,
        open_http_client(settings) as http_client,
        open_cpu_workers(settings) as process_pool,
    ):
        app.state.database = database
        app.state.http_client = http_client
        app.state.process_pool = process_pool
        try:
            async with watching(app, settings):
                yield
        finally:
            threads.total_tokens = threads_before


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    docs = settings.docs_enabled
    app = FastAPI(
        title=settings.project_name,
        lifespan=lifespan,
        # Larger bodies get a 413 as they are read; a route may allow more (README, "Bodies").
        max_body_size=settings.max_request_body_bytes,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.settings = settings
    # The last added runs first: every answer gets its request id and the security headers,
    # even a refused Host, and is logged with the client's address a trusted proxy gave.
    app.add_middleware(BodyTimeoutMiddleware, timeout=settings.request_body_timeout)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.allowed_hosts)
    app.add_middleware(SecurityHeadersMiddleware)
    app.state.requests_in_flight = RequestsInFlight()
    app.add_middleware(
        RequestContextMiddleware,
        in_flight=app.state.requests_in_flight,
        with_metrics=settings.metrics_enabled,
        access_log=settings.access_log,
    )
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.forwarded_allow_ips)
    add_error_handlers(app)
    app.include_router(router)
    if settings.metrics_enabled:
        app.include_router(metrics.router)
    return app
