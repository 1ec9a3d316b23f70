from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from app.core.concurrency import run_in_thread
from app.core.session import RequestConnection, get_session
from tests.probes import ProbeRow


def add_row_through_the_dependency(
    app: FastAPI, connection: Connection, title: str, *, fail: bool
) -> None:
    """Drive the session dependency as FastAPI does: in a worker thread, as it is sync."""
    request = SimpleNamespace(app=app)  # all the dependency reads of a request
    dependency = get_session(request, RequestConnection.lent(connection), connection)  # type: ignore[arg-type]
    session = next(dependency)
    session.add(ProbeRow(title=title))
    session.flush()
    if fail:
        with pytest.raises(RuntimeError, match="handler failed"):
            dependency.throw(RuntimeError("handler failed"))
    else:
        with pytest.raises(StopIteration):
            next(dependency)


@pytest.mark.usefixtures("probe_table")
async def test_the_request_session_commits_when_the_handler_succeeds(
    app: FastAPI, client: AsyncClient, connection: Connection
) -> None:
    await run_in_thread(add_row_through_the_dependency, app, connection, "kept", fail=False)
    assert (await client.get("/probes/rows")).json() == ["kept"]


@pytest.mark.usefixtures("probe_table")
async def test_the_request_session_rolls_back_when_the_handler_raises(
    app: FastAPI, client: AsyncClient, connection: Connection
) -> None:
    await run_in_thread(add_row_through_the_dependency, app, connection, "lost", fail=True)
    assert (await client.get("/probes/rows")).json() == []


def test_database_errors_never_carry_the_statements_parameters(engine: Engine) -> None:
    statement = text("SELECT * FROM no_such_table WHERE name = :name")
    with engine.connect() as connection, pytest.raises(DBAPIError) as caught:
        connection.execute(statement, {"name": "s3cret-value"})
    # The driver's own message may quote the statement; SQLAlchemy adds no parameters to it.
    assert "'name': 's3cret-value'" not in str(caught.value)
    assert "[SQL parameters hidden due to hide_parameters=True]" in str(caught.value)
