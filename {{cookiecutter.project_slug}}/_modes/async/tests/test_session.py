from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.core.session import RequestConnection, get_session
from tests.probes import ProbeRow


@pytest.mark.usefixtures("probe_table")
async def test_the_request_session_commits_when_the_handler_succeeds(
    app: FastAPI, client: AsyncClient, connection: AsyncConnection
) -> None:
    request = SimpleNamespace(app=app)  # all the dependency reads of a request
    dependency = get_session(request, RequestConnection.lent(connection), connection)  # type: ignore[arg-type]
    session = await anext(dependency)
    session.add(ProbeRow(title="kept"))
    with pytest.raises(StopAsyncIteration):
        await anext(dependency)
    assert (await client.get("/probes/rows")).json() == ["kept"]


@pytest.mark.usefixtures("probe_table")
async def test_the_request_session_rolls_back_when_the_handler_raises(
    app: FastAPI, client: AsyncClient, connection: AsyncConnection
) -> None:
    request = SimpleNamespace(app=app)  # all the dependency reads of a request
    dependency = get_session(request, RequestConnection.lent(connection), connection)  # type: ignore[arg-type]
    session = await anext(dependency)
    session.add(ProbeRow(title="lost"))
    await session.flush()
    with pytest.raises(RuntimeError, match="handler failed"):
        await dependency.athrow(RuntimeError("handler failed"))
    assert (await client.get("/probes/rows")).json() == []


async def test_database_errors_never_carry_the_statements_parameters(engine: AsyncEngine) -> None:
    statement = text("SELECT * FROM no_such_table WHERE name = :name")
    async with engine.connect() as connection:
        with pytest.raises(DBAPIError) as caught:
            await connection.execute(statement, {"name": "s3cret-value"})
    # The driver's own message may quote the statement; SQLAlchemy adds no parameters to it.
    assert "'name': 's3cret-value'" not in str(caught.value)
    assert "[SQL parameters hidden due to hide_parameters=True]" in str(caught.value)
