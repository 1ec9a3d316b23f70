"""The database the app opens at start-up: its async engine, its session factory, and the
slots that admit requests to the pool's connections."""

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

from anyio import Semaphore
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.core.concurrency import acquire_or_overload, run_in_thread
from app.core.db.server import announce, forgive_outage, require_utf8_on_connect
from app.core.db.sqlite import configure_sqlite


@dataclass(frozen=True)
class DatabaseOptions:
    """What the engine is made of: the settings DATABASE_URL and DB_* (see app/resources.py)."""

    url: str
    pool_size: int  # connections, opened once and reused
    pool_timeout: float  # seconds a request waits for one (and a write for SQLite's lock)
    connect_timeout: float  # seconds to connect to a database server
    statement_timeout: float  # seconds a statement may run on the server


def create_engine(options: DatabaseOptions) -> AsyncEngine:
    url = make_url(options.url)
    engine_options = {
        # A fixed pool: connections are opened once and reused, never churned under load.
        "pool_size": options.pool_size,
        "max_overflow": 0,
        "pool_timeout": options.pool_timeout,
        # Errors (and so logs) show a statement's SQL, never its parameters: user data.
        "hide_parameters": True,
    }
    if url.get_backend_name() == "sqlite":
        # `timeout`: how long a write waits for SQLite's lock before failing.
        engine = create_async_engine(
            url, **engine_options, connect_args={"timeout": options.pool_timeout}
        )
        configure_sqlite(engine.sync_engine)
        return engine
    # No pre-ping (a round trip per request): a connection that died, e.g. across a database
    # restart, fails its request with a 503, and SQLAlchemy then replaces every connection
    # opened before it.
    engine = create_async_engine(
        url,
        **engine_options,
        connect_args={
            "timeout": options.connect_timeout,
            "server_settings": {
                "statement_timeout": str(int(options.statement_timeout * 1000)),
            },
        },
    )
    require_utf8_on_connect(
        engine.sync_engine, lambda dbapi: dbapi.driver_connection.get_settings().server_encoding
    )
    return engine


@dataclass(frozen=True)
class Database:
    """The app's database, opened by the lifespan.

    `engine` gives each request that uses the database one connection, whatever number of
    database dependencies it takes. `sessions` makes the session of a request that changes
    data, on that connection: one transaction, committed at the end of the handler. `slots`
    holds one ticket per pooled connection, which a request takes before it opens one.
    """

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    slots: Semaphore
    slot_timeout: float  # seconds a request waits for a slot before it is refused (503)

    def connection_slot(self) -> AbstractAsyncContextManager[None]:
        """One of the pool's connections, reserved for a request.

        Taken on the event loop, holding no thread, so requests that hold a connection always
        find a thread to finish on. At most `DB_POOL_SIZE` requests use the database at once;
        the others wait up to `DB_POOL_TIMEOUT` seconds, then are refused as overloaded.
        """
        return acquire_or_overload(self.slots, self.slot_timeout, "database connection")


@asynccontextmanager
async def open_database(options: DatabaseOptions) -> AsyncIterator[Database]:
    """Create the engine for the app's lifespan and dispose of it (closing connections) after."""
    # Creating an engine imports its driver and reads files: keep it off the event loop.
    engine = await run_in_thread(create_engine, options)
    try:
        await _check_server(engine)
        # expire_on_commit=False: objects stay readable after commit, with no lazy reload
        # (which async code cannot do implicitly).
        yield Database(
            engine=engine,
            sessions=async_sessionmaker(expire_on_commit=False),
            slots=Semaphore(options.pool_size),
            slot_timeout=options.pool_timeout,
        )
    finally:
        await engine.dispose()


async def _check_server(engine: AsyncEngine) -> None:
    announce(engine.url)
    if engine.dialect.name != "postgresql":
        return
    try:
        async with engine.connect():  # its connect event checks the database
            pass
    except Exception as error:
        if not forgive_outage(error):
            raise
