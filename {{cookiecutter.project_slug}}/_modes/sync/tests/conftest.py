"""Fixtures: one app and one migrated test database per run; one rolled-back transaction per test.

The database is TEST_DATABASE_URL when set, else a throwaway SQLite file; never DATABASE_URL:
the tests' settings come from here, not from the shell or `.env`.
The HTTP tests are async (the app runs on an event loop); database set-up here is sync, in
sync fixtures, which run outside the event loop.
"""

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import sessionmaker

from app.core.db.engine import create_engine
from app.core.session import RequestConnection, open_request_connection
from app.factory import create_app
from app.resources import database_options, resources_of
from app.settings import Settings
from tests.migrations import migrate_from_scratch
from tests.probes import ProbeBase, probed
from tests.settings import IsolatedSettings

# Every test fails if it blocks the event loop: see tests/loop_guard.py.
pytest_plugins = ["tests.loop_guard"]


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    url = os.environ.get("TEST_DATABASE_URL") or (
        f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    )
    return IsolatedSettings(database_url=url)


@pytest.fixture(scope="session")
def engine(settings: Settings) -> Iterator[Engine]:
    engine = create_engine(database_options(settings))
    with engine.begin() as connection:
        migrate_from_scratch(connection)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    app = probed(create_app(settings))
    # Through the ASGI lifespan protocol, as a server runs it: the loop guard judges it too.
    async with LifespanManager(app):
        yield app


@pytest.fixture
def connection(engine: Engine) -> Iterator[Connection]:
    """A connection whose work is rolled back after the test."""
    with engine.connect() as connection:
        transaction = connection.begin()
        yield connection
        transaction.rollback()


@pytest.fixture
def probe_table(connection: Connection) -> None:
    """The probes' table (tests/probes.py), made in the test's transaction and rolled back."""
    ProbeBase.metadata.create_all(connection)


@pytest.fixture
async def client(app: FastAPI, connection: Connection) -> AsyncIterator[AsyncClient]:
    """A client of the app whose requests all use the test's connection, rolled back afterwards.

    The app's own dependencies still run on it: its sessions' commits become SAVEPOINT
    releases, and reads see the test's uncommitted data.
    """
    resources = resources_of(app)
    database = replace(
        resources.database,
        sessions=sessionmaker(expire_on_commit=False, join_transaction_mode="create_savepoint"),
    )
    app.state.resources = replace(resources, database=database)

    async def lent_connection() -> AsyncIterator[RequestConnection]:
        yield RequestConnection.lent(connection)

    app.dependency_overrides[open_request_connection] = lent_connection
    transport = ASGITransport(app=app)
    try:
        async with AsyncClient(transport=transport, base_url="http://localhost") as client:
            yield client
    finally:
        del app.dependency_overrides[open_request_connection]
        app.state.resources = resources
