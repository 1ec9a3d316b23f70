"""The engine, its session factory, and the per-request session dependency."""

from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager

import sqlalchemy
from fastapi import Request
from sqlalchemy import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from app.core.concurrency import run_in_thread
from app.core.config import Settings
from app.db.errors import DatabaseUnavailableError
from app.db.sqlite import configure_sqlite


def create_engine(settings: Settings) -> Engine:
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        # `timeout`: how long a write waits for SQLite's lock before failing.
        engine = sqlalchemy.create_engine(url, connect_args={"timeout": settings.db_pool_timeout})
        configure_sqlite(engine)
        return engine
    return sqlalchemy.create_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_pre_ping=True,  # replaces connections that died, e.g. across a database restart
        connect_args={
            "connect_timeout": max(1, round(settings.db_connect_timeout)),
            "options": f"-c statement_timeout={int(settings.db_statement_timeout * 1000)}",
        },
    )


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[sessionmaker[Session]]:
    """Create the engine for the app's lifespan and dispose of it (closing connections) after."""
    engine = create_engine(settings)
    try:
        # expire_on_commit=False: objects stay readable after commit, with no reload query.
        yield sessionmaker(engine, expire_on_commit=False)
    finally:
        # Closing connections is blocking I/O: keep it off the event loop.
        await run_in_thread(engine.dispose)


def get_session(request: Request) -> Generator[Session, None, None]:
    """One session per request: committed if the handler succeeds, rolled back if it raises."""
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    with factory.begin() as session:
        try:
            # Connect now: a server that is down or unreachable fails here, as a 503.
            session.connection()
        except (OSError, TimeoutError) as error:
            raise DatabaseUnavailableError(str(error)) from error
        yield session
