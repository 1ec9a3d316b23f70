from sqlalchemy.ext.asyncio import AsyncEngine

from tests.migrations import check_for_drift


async def test_models_and_migrations_do_not_drift(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.run_sync(check_for_drift)
