"""Under load every request is answered: no deadlock, and overload refused fast and clearly."""

import asyncio
import multiprocessing
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient

from app.factory import create_app
from app.resources import resources_of
from app.settings import Settings
from tests.probes import probed
from tests.settings import IsolatedSettings

CPU = "/probes/cpu"


@asynccontextmanager
async def serving(settings: Settings, **changes: Any) -> AsyncIterator[AsyncClient]:
    """A client of a new app on the test database, with these settings changed."""
    fields = {"database_url": settings.database_url, "cpu_workers": 1, **changes}
    app = probed(create_app(IsolatedSettings(**fields)))
    async with (
        LifespanManager(app),
        AsyncClient(transport=ASGITransport(app=app), base_url="http://localhost") as client,
    ):
        yield client


async def test_far_more_concurrent_requests_than_connections_all_succeed(
    settings: Settings, engine: object
) -> None:
    # 2 connections and 4 threads for 64 requests at once: waiting for a connection in a
    # thread would deadlock here (until the pool timeout turns it into 503s); waiting on the
    # event loop does not.
    async with serving(settings, db_pool_size=2, worker_threads=4, db_pool_timeout=5) as client:
        requests = [client.get("/probes/database") for _ in range(48)]
        requests += [client.get("/health/ready") for _ in range(16)]
        responses = await asyncio.gather(*requests)
    assert [response.status_code for response in responses] == [200] * 64


async def test_a_request_that_waits_too_long_for_a_connection_is_refused_as_overloaded(
    settings: Settings, engine: object
) -> None:
    async with serving(settings, db_pool_size=1, worker_threads=2, db_pool_timeout=0.2) as client:
        app = client._transport.app  # type: ignore[attr-defined]
        async with resources_of(app).database.slots:  # the only connection is busy
            response = await client.get("/probes/database")
        assert response.status_code == 503
        assert response.json() == {"detail": "Service overloaded, retry shortly"}
        assert response.headers["retry-after"] == "1"
        # Busy is not down: once the connection is free, requests are served again.
        assert (await client.get("/probes/database")).status_code == 200


async def test_cpu_jobs_beyond_the_queue_are_refused_and_a_job_past_its_limit_is_stopped(
    settings: Settings,
) -> None:
    async with serving(settings, cpu_queue_size=0, cpu_job_timeout=1) as client:
        slow = asyncio.create_task(client.get(CPU, params={"seconds": 30}))
        await asyncio.sleep(0.3)  # the slow job holds the only worker
        refused = await client.get(CPU, params={"seconds": 0.001})
        assert refused.status_code == 503
        assert refused.json() == {"detail": "Service overloaded, retry shortly"}
        stopped = await slow
        assert stopped.status_code == 503
        assert "ran longer than 1 s" in stopped.json()["detail"]
        # The stopped job's worker was replaced: the pool serves again.
        assert (await client.get(CPU, params={"seconds": 0.001})).status_code == 200


async def test_a_killed_worker_process_is_replaced(settings: Settings) -> None:
    before = set(multiprocessing.active_children())
    async with serving(settings) as client:
        assert (await client.get(CPU, params={"seconds": 0.001})).status_code == 200
        for worker in set(multiprocessing.active_children()) - before:
            os.kill(worker.pid or 0, signal.SIGKILL)
        statuses = []
        for _ in range(50):
            response = await client.get(CPU, params={"seconds": 0.001})
            statuses.append(response.status_code)
            if response.status_code == 200:
                break
            await asyncio.sleep(0.1)
    assert statuses[-1] == 200, statuses
    assert set(statuses) <= {200, 503}, statuses
