"""The ASGI application: `app.main:app`, built by `create_app()`."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.api.errors import add_error_handlers
from app.api.router import router
from app.core.concurrency import open_process_pool
from app.core.config import Settings
from app.db.session import open_database


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the database and the process pool for the app's lifetime; release them after."""
    settings: Settings = app.state.settings
    async with (
        open_database(settings) as sessionmaker,
        open_process_pool(settings.process_pool_workers) as process_pool,
    ):
        app.state.sessionmaker = sessionmaker
        app.state.process_pool = process_pool
        yield


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(title=settings.project_name, lifespan=lifespan)
    app.state.settings = settings
    add_error_handlers(app)
    app.include_router(router)
    return app


app = create_app()
