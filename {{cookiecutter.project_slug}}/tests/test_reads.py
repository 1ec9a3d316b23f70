"""Reads through ReadConnectionDep cost one round trip: no transaction block around them."""

import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient

from app.factory import create_app
from app.settings import Settings
from tests.probes import probed
from tests.settings import IsolatedSettings


async def test_a_read_runs_outside_a_transaction_block(settings: Settings) -> None:
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only: set TEST_DATABASE_URL to run it")
    # The app's own connections: the `client` fixture lends one inside the test's transaction.
    app = probed(create_app(IsolatedSettings(database_url=settings.database_url, cpu_workers=1)))
    async with (
        LifespanManager(app),
        AsyncClient(transport=ASGITransport(app=app), base_url="http://localhost") as client,
    ):
        answers = [(await client.get("/probes/transaction")).json() for _ in range(3)]
    assert answers == [{"in_block": False}] * 3
