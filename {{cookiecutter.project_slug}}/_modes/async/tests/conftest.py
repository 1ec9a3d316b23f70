"""Fixtures: one app and one migrated test database per run; one rolled-back transaction per test.

The database is TEST_DATABASE_URL when set, else a throwaway SQLite file; never DATABASE_URL:
the tests' settings come from here, not from the shell or `.env`.
"""

import os
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker

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
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_options(settings))
    async with engine.begin() as connection:
        await connection.run_sync(migrate_from_scratch)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    app = probed(create_app(settings))
    # Through the ASGI lifespan protocol, as a server runs it: the loop guard judges it too.
    async with LifespanManager(app):
        yield app


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection whose work is rolled back after the test."""
    async with engine.connect() as connection:
        transaction = await connection.begin()
        yield connection
        await transaction.rollback()


@pytest.fixture
async def probe_table(connection: AsyncConnection) -> None:
    """The probes' table (tests/probes.py), made in the test's transaction and rolled back."""
    await connection.run_sync(ProbeBase.metadata.create_all)


@pytest.fixture
async def client(app: FastAPI, connection: AsyncConnection) -> AsyncIterator[AsyncClient]:
    """A client of the app whose requests all use the test's connection, rolled back afterwards.

    The app's own dependencies still run on it: its sessions' commits become SAVEPOINT
    releases, and reads see the test's uncommitted data.
    """
    resources = resources_of(app)
    database = replace(
        resources.database,
        sessions=async_sessionmaker(
            expire_on_commit=False, join_transaction_mode="create_savepoint"
        ),
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
