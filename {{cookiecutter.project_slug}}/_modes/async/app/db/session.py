"""The async engine, and each request's one connection, for its session (changes) and reads."""

from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Annotated

from anyio import Semaphore
from fastapi import Depends, Request
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.core.concurrency import acquire_or_overload, run_in_thread
from app.core.config import Settings
from app.db.errors import DatabaseUnavailableError
from app.db.server import announce, forgive_outage, require_utf8_on_connect
from app.db.sqlite import configure_sqlite


def create_engine(settings: Settings) -> AsyncEngine:
    url = make_url(settings.database_url)
    engine_options = {
        # A fixed pool: connections are opened once and reused, never churned under load.
        "pool_size": settings.db_pool_size,
        "max_overflow": 0,
        "pool_timeout": settings.db_pool_timeout,
        # Errors (and so logs) show a statement's SQL, never its parameters: user data.
        "hide_parameters": True,
    }
    if url.get_backend_name() == "sqlite":
        # `timeout`: how long a write waits for SQLite's lock before failing.
        engine = create_async_engine(
            url, **engine_options, connect_args={"timeout": settings.db_pool_timeout}
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
            "timeout": settings.db_connect_timeout,
            "server_settings": {
                "statement_timeout": str(int(settings.db_statement_timeout * 1000)),
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
    data, on that connection: one transaction, committed at the end of the handler.
    """

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[Database]:
    """Create the engine for the app's lifespan and dispose of it (closing connections) after."""
    # Creating an engine imports its driver and reads files: keep it off the event loop.
    engine = await run_in_thread(create_engine, settings)
    try:
        await _check_server(engine)
        # expire_on_commit=False: objects stay readable after commit, with no lazy reload
        # (which async code cannot do implicitly).
        yield Database(engine=engine, sessions=async_sessionmaker(expire_on_commit=False))
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


class RequestConnection:
    """A request's one database connection, for every database dependency it takes: opened on
    first use, closed when the handler returns, or, for a streaming body, when the body ends."""

    def __init__(self, engine: AsyncEngine | None, connection: AsyncConnection | None = None):
        self._engine = engine
        self._connection = connection
        self.owned = connection is None  # False: a connection lent by the tests, never closed
        self.streaming = False

    @classmethod
    def lent(cls, connection: AsyncConnection) -> "RequestConnection":
        """The tests' connection: the app's dependencies run on it, and the tests roll it back."""
        return cls(None, connection)

    async def open(self) -> AsyncConnection:
        if self._connection is None:
            assert self._engine is not None
            with _connect_or_unavailable():
                self._connection = await self._engine.connect()
        return self._connection

    async def close(self, *, commit: bool) -> None:
        """Commit what the request began (or roll it back), and return the connection."""
        connection, self._connection = self._connection, None
        if connection is None or not self.owned:
            return
        try:
            if commit and connection.in_transaction():
                await connection.commit()
        finally:
            await connection.close()


async def open_request_connection(request: Request) -> AsyncGenerator[RequestConnection, None]:
    """One slot of the pool for the request, taken on the event loop and held until the response
    has been sent; the connection opens when a database dependency first needs it."""
    database: Database = request.app.state.database
    async with _connection_slot(request):
        held = RequestConnection(database.engine)
        try:
            yield held
        except BaseException:
            await held.close(commit=False)
            raise
        await held.close(commit=True)


RequestConnectionDep = Annotated[RequestConnection, Depends(open_request_connection)]


async def get_connection(held: RequestConnectionDep) -> AsyncGenerator[AsyncConnection, None]:
    """The request's one connection, for every database dependency it takes (a session, a read
    connection, the user's own built on them): one slot of the pool and one connection, never
    a wait for a second while holding the first. What the request began is committed when the
    handler returns, and rolled back if it raises.
    """
    connection = await held.open()
    try:
        yield connection
    except BaseException:
        await held.close(commit=False)
        raise
    if not held.streaming:
        await held.close(commit=True)


# scope="function": released when the handler returns, before the response is sent.
ConnectionDep = Annotated[AsyncConnection, Depends(get_connection, scope="function")]


async def get_session(
    request: Request, held: RequestConnectionDep, connection: ConnectionDep
) -> AsyncGenerator[AsyncSession, None]:
    """The request's session, on its connection: committed if the handler succeeds, rolled back
    if it raises."""
    database: Database = request.app.state.database
    await _own_transaction(held, connection)
    async with database.sessions(bind=connection) as session, session.begin():
        yield session


async def get_read_connection(connection: ConnectionDep) -> AsyncConnection:
    """The request's connection, for reads through SQLAlchemy Core (no ORM bookkeeping). They
    see what the request's session changed; on SQLite they run outside any transaction, so they
    never wait for a writer's lock."""
    return await _for_reads(connection)


async def get_stream_connection(held: RequestConnectionDep) -> AsyncConnection:
    """The request's connection, kept open until a streaming response's body has been sent:
    for `await connection.stream(...)` (a server-side cursor) inside the body."""
    held.streaming = True
    return await _for_reads(await held.open())


async def _for_reads(connection: AsyncConnection) -> AsyncConnection:
    if connection.dialect.name == "sqlite" and not connection.in_transaction():
        await connection.execution_options(isolation_level="AUTOCOMMIT")
    return connection


async def _own_transaction(held: RequestConnection, connection: AsyncConnection) -> None:
    """A session begins its own transaction, committed when the handler returns: end the one
    the request's reads began (on SQLite, leave their autocommit mode)."""
    if held.owned and connection.in_transaction():
        await connection.commit()
    options = (
        connection.sync_connection.get_execution_options() if connection.sync_connection else {}
    )
    if options.get("isolation_level") == "AUTOCOMMIT":
        await connection.execution_options(isolation_level=connection.default_isolation_level)


def _connection_slot(request: Request) -> AbstractAsyncContextManager[None]:
    """One of the pool's connections, reserved for this request.

    At most `DB_POOL_SIZE` requests use the database at once; the others wait up to
    `DB_POOL_TIMEOUT` seconds, then are refused as overloaded.
    """
    settings: Settings = request.app.state.settings
    slots: Semaphore = request.app.state.connection_slots
    return acquire_or_overload(slots, settings.db_pool_timeout, "database connection")


@contextmanager
def _connect_or_unavailable() -> Iterator[None]:
    """Connect now: a server that is down or unreachable fails here, as a 503."""
    try:
        yield
    except (OSError, TimeoutError) as error:
        raise DatabaseUnavailableError(str(error)) from error
