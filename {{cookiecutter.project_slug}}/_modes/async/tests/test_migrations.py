from alembic import command
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.migrations import alembic_config


async def test_models_and_migrations_do_not_drift(engine: AsyncEngine) -> None:
    """`alembic check`: autogenerate finds nothing to add (raises if it does)."""

    def check(connection: Connection) -> None:
        command.check(alembic_config(connection))

    async with engine.connect() as connection:
        await connection.run_sync(check)
