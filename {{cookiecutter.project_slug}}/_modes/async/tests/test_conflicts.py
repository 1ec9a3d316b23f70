"""A constraint violation answers the same 409 on SQLite and PostgreSQL (the suite runs on each):
one detail per kind of constraint and what the statement did, whatever the database says."""

import pytest
from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table, delete, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Executable

from app.api.errors import conflict_detail
from app.db.errors import constraint_violation
from app.models.base import Base

metadata = MetaData(naming_convention=Base.metadata.naming_convention)
parents = Table(
    "conflict_parents",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(20), unique=True),
)
restricted = Table(
    "conflict_restricted",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("parent_id", ForeignKey("conflict_parents.id", ondelete="RESTRICT")),
)
referring = Table(
    "conflict_referring",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("parent_id", ForeignKey("conflict_parents.id")),
)

CASES = {
    "duplicate": (
        insert(parents).values(id=9, name="one"),
        "Conflicts with something already stored",
    ),
    "reference to nothing": (
        insert(referring).values(parent_id=99),
        "Refers to something that does not exist",
    ),
    "delete restricted": (
        delete(parents).where(parents.c.id == 1),
        "Is still referred to: remove or change what refers to it first",
    ),
    "delete referred to": (
        delete(parents).where(parents.c.id == 2),
        "Is still referred to: remove or change what refers to it first",
    ),
}


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
