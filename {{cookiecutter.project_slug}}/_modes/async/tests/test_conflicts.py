"""A constraint violation answers the same 409 on SQLite and PostgreSQL (the suite runs on each):
one detail per kind of constraint and what the statement did, whatever the database says."""

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Executable

from app.api.errors import conflict_detail
from app.core.db.errors import constraint_violation
from tests.conflicts import CASES, metadata, parents, referring, restricted


@pytest.mark.parametrize("case", CASES)
async def test_one_conflict_one_answer(connection: AsyncConnection, case: str) -> None:
    statement, detail = CASES[case]
    await connection.run_sync(metadata.create_all)
    await connection.execute(insert(parents).values([(1, "one"), (2, "two")]))
    await connection.execute(insert(restricted).values(parent_id=1))
    await connection.execute(insert(referring).values(parent_id=2))
    with pytest.raises(IntegrityError) as caught:
        await execute_in_savepoint(connection, statement)
    violation = constraint_violation(caught.value)
    assert violation is not None, caught.value
    assert conflict_detail(violation) == detail


async def execute_in_savepoint(connection: AsyncConnection, statement: Executable) -> None:
    async with connection.begin_nested():
        await connection.execute(statement)
