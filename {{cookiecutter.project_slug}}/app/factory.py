"""`create_app(settings)`: the application and its lifespan, built from the settings given."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.trustedhost import TrustedHostMiddleware
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app.api.errors import add_error_handlers
from app.api.router import router
from app.api.routes import metrics
from app.core.logging import logging_off_the_loop
from app.core.middleware.body_timeout import BodyTimeoutMiddleware
from app.core.middleware.request_context import RequestContextMiddleware, RequestsInFlight
from app.core.middleware.security_headers import SecurityHeadersMiddleware
from app.core.monitoring import watching
from app.resources import open_resources
from app.settings import Settings

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    in_flight = RequestsInFlight()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        """Open what the app uses (app/resources.py) for its lifetime, watched by the stall
        monitor; release it after."""
        async with logging_off_the_loop(settings.log_level, settings.log_format):
            async with (
                open_resources(settings) as resources,
                watching(
                    resources,
                    in_flight,
                    stall_threshold=settings.stall_threshold,
                    report_stalls=settings.stall_monitor_enabled,
                    with_metrics=settings.metrics_enabled,
                    web_concurrency=settings.web_concurrency,
                ),
            ):
                app.state.resources = resources
                yield
            # The server says when it stopped, not whether the app released what it held.
            logger.info("Lifespan ended: every resource released")

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
    # The last added runs first: every answer gets its request id and the security headers,
    # even a refused Host, and is logged with the client's address a trusted proxy gave.
    app.add_middleware(BodyTimeoutMiddleware, timeout=settings.request_body_timeout)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.allowed_hosts)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(
        RequestContextMiddleware,
        in_flight=in_flight,
        with_metrics=settings.metrics_enabled,
        access_log=settings.access_log,
    )
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.forwarded_allow_ips)
    add_error_handlers(app)
    app.include_router(router)
    if settings.metrics_enabled:
        app.include_router(metrics.router)
    return app
