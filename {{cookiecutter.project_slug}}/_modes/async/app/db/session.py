"""The async engine, its session factory, and the per-request session dependency."""

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Request
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.core.config import Settings
from app.db.errors import DatabaseUnavailableError
from app.db.sqlite import configure_sqlite


def create_engine(settings: Settings) -> AsyncEngine:
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        # `timeout`: how long a write waits for SQLite's lock before failing.
        engine = create_async_engine(url, connect_args={"timeout": settings.db_pool_timeout})
        configure_sqlite(engine.sync_engine)
        return engine
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_pre_ping=True,  # replaces connections that died, e.g. across a database restart
        connect_args={
            "timeout": settings.db_connect_timeout,
            "server_settings": {
                "statement_timeout": str(int(settings.db_statement_timeout * 1000)),
            },
        },
    )


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Create the engine for the app's lifespan and dispose of it (closing connections) after."""
    engine = create_engine(settings)
    try:
        # expire_on_commit=False: objects stay readable after commit, with no lazy reload
        # (which async code cannot do implicitly).
        yield async_sessionmaker(engine, expire_on_commit=False)
    finally:
        await engine.dispose()


async def get_session(request: Request) -> AsyncGenerator[AsyncSession, None]:
    """One session per request: committed if the handler succeeds, rolled back if it raises."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker.begin() as session:
        try:
            # Connect now: a server that is down or unreachable fails here, as a 503.
            await session.connection()
        except (OSError, TimeoutError) as error:
            raise DatabaseUnavailableError(str(error)) from error
        yield session
