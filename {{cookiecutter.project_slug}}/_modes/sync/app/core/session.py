"""Each request's one database connection, for its session (changes) and its reads."""

from collections.abc import AsyncIterator, Generator, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session

from app.core.concurrency import run_in_thread
from app.core.db.errors import DatabaseUnavailableError
from app.core.resources import core_resources_of


class RequestConnection:
    """A request's one database connection, for every database dependency it takes: opened on
    first use, closed when the handler returns, or, for a streaming body, when the body ends."""

    def __init__(self, engine: Engine | None, connection: Connection | None = None):
        self._engine = engine
        self._connection = connection
        self.owned = connection is None  # False: a connection lent by the tests, never closed
        self.streaming = False

    @classmethod
    def lent(cls, connection: Connection) -> "RequestConnection":
        """The tests' connection: the app's dependencies run on it, and the tests roll it back."""
        return cls(None, connection)

    @property
    def is_open(self) -> bool:
        return self._connection is not None

    def open(self) -> Connection:
        if self._connection is None:
            assert self._engine is not None
            with _connect_or_unavailable():
                self._connection = self._engine.connect()
        return self._connection

    def close(self, *, commit: bool) -> None:
        """Commit what the request began (or roll it back), and return the connection."""
        connection, self._connection = self._connection, None
        if connection is None or not self.owned:
            return
        try:
            if commit and connection.in_transaction():
                connection.commit()
        finally:
            connection.close()


async def open_request_connection(request: Request) -> AsyncIterator[RequestConnection]:
    """One slot of the pool for the request, taken on the event loop and held until the response
    has been sent; the connection opens when a database dependency first needs it.

    Waiting for a slot on the event loop holds no worker thread. Waiting in a worker thread
    instead would deadlock under load: every thread waiting for a connection, while the
    requests that hold one wait for a thread to finish on (FastAPI issue #3205).
    """
    database = core_resources_of(request.app).database
    async with database.connection_slot():
        held = RequestConnection(database.engine)
        try:
            yield held
        except BaseException:
            # Closing a connection is blocking I/O: keep it off the event loop.
            if held.is_open:
                await run_in_thread(partial(held.close, commit=False))
            raise
        # Still open only for a streamed body: the handler's dependency closed it otherwise, and
        # a hop to a thread with nothing to close cost a read 7 to 13 % of its CPU (measured).
        if held.is_open:
            await run_in_thread(partial(held.close, commit=True))


RequestConnectionDep = Annotated[RequestConnection, Depends(open_request_connection)]


def get_connection(held: RequestConnectionDep) -> Generator[Connection, None, None]:
    """The request's one connection, for every database dependency it takes (a session, a read
    connection, the user's own built on them): one slot of the pool and one connection, never
    a wait for a second while holding the first. What the request began is committed when the
    handler returns, and rolled back if it raises.
    """
    connection = held.open()
    try:
        yield connection
    except BaseException:
        held.close(commit=False)
        raise
    if not held.streaming:
        held.close(commit=True)


# scope="function": released when the handler returns, before the response is sent.
ConnectionDep = Annotated[Connection, Depends(get_connection, scope="function")]


def get_session(
    request: Request, held: RequestConnectionDep, connection: ConnectionDep
) -> Generator[Session, None, None]:
    """The request's session, on its connection: committed if the handler succeeds, rolled back
    if it raises."""
    database = core_resources_of(request.app).database
    _own_transaction(held, connection)
    with database.sessions(bind=connection) as session, session.begin():
        yield session


async def get_read_connection(connection: ConnectionDep) -> Connection:
    """The request's connection, for reads through SQLAlchemy Core (no ORM bookkeeping). They
    see what the request's session changed; on SQLite they run outside any transaction, so they
    never wait for a writer's lock.

    `async def`, as it does no I/O (the connection is open, and SQLite's autocommit is a flag):
    a worker thread for it cost a read 12 % of its CPU (measured).
    """
    return _for_reads(connection)


def get_stream_connection(held: RequestConnectionDep) -> Connection:
    """The request's connection, kept open until a streaming response's body has been sent:
    for a server-side cursor (`stream_results=True`) read by the body's iterator."""
    held.streaming = True
    return _for_reads(held.open())


def _for_reads(connection: Connection) -> Connection:
    if connection.dialect.name == "sqlite" and not connection.in_transaction():
        connection.execution_options(isolation_level="AUTOCOMMIT")
    return connection


def _own_transaction(held: RequestConnection, connection: Connection) -> None:
    """A session begins its own transaction, committed when the handler returns: end the one
    the request's reads began (on SQLite, leave their autocommit mode)."""
    if held.owned and connection.in_transaction():
        connection.commit()
    if connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        connection.execution_options(isolation_level=connection.default_isolation_level)


@contextmanager
def _connect_or_unavailable() -> Iterator[None]:
    """Connect now: a server that is down or unreachable fails here, as a 503."""
    try:
        yield
    except (OSError, TimeoutError) as error:
        raise DatabaseUnavailableError(str(error)) from error
