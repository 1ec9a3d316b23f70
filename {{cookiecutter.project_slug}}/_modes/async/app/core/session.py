"""Each request's one database connection, for its session (changes) and its reads."""

from collections.abc import AsyncGenerator, Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from app.core.db.errors import DatabaseUnavailableError
from app.core.resources import core_resources_of


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
    database = core_resources_of(request.app).database
    async with database.connection_slot():
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
    database = core_resources_of(request.app).database
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


@contextmanager
def _connect_or_unavailable() -> Iterator[None]:
    """Connect now: a server that is down or unreachable fails here, as a 503."""
    try:
        yield
    except (OSError, TimeoutError) as error:
        raise DatabaseUnavailableError(str(error)) from error
