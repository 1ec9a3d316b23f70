import logging
import time

import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient

from app.factory import create_app
from tests.probes import probed
from tests.settings import IsolatedSettings


async def test_live_answers_ok(client: AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_answers_ok_when_the_database_answers(client: AsyncClient) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_a_database_that_is_down_gives_a_fast_503_not_a_500() -> None:
    # Nothing listens on port 1 of the loopback interface: connections are refused.
    settings = IsolatedSettings(
        database_url="postgresql://nobody@127.0.0.1:1/nothing",
        db_connect_timeout=1,
        cpu_workers=1,
    )
    app = probed(create_app(settings))
    async with (
        LifespanManager(app),
        AsyncClient(transport=ASGITransport(app=app), base_url="http://localhost") as client,
    ):
        for method, path in [
            ("GET", "/health/ready"),
            ("GET", "/probes/database"),
            ("POST", "/probes/rows"),
            ("GET", "/probes/rows/1"),
        ]:
            started = time.perf_counter()
            response = await client.request(method, path, json={"title": "t"})
            elapsed = time.perf_counter() - started
            assert response.status_code == 503, (method, path, response.text)
            assert response.json() == {"detail": "Database unavailable, retry later"}
            assert response.headers["retry-after"] == "5"
            assert elapsed < 5, f"{method} {path} took {elapsed:.1f}s"
        # The liveness probe does not depend on the database.
        assert (await client.get("/health")).status_code == 200


async def test_an_outage_is_logged_without_forged_lines_or_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = IsolatedSettings(
        database_url="postgresql://nobody:s3cret-pass@127.0.0.1:1/nothing",
        db_connect_timeout=1,
        cpu_workers=1,
    )
    app = probed(create_app(settings))
    # A path that would start a new, forged log line and colour the terminal, if logged as is.
    forged = "/probes/rows/1%0aWARNING%20all%20is%20well%1b[8m"
    async with (
        LifespanManager(app),
        AsyncClient(transport=ASGITransport(app=app), base_url="http://localhost") as client,
    ):
        with caplog.at_level(logging.WARNING, logger="app.api.errors"):
            assert (await client.get(forged)).status_code == 503
    [record] = [r for r in caplog.records if r.name == "app.api.errors"]
    line = record.getMessage()
    assert "\n" not in line
    assert "\x1b" not in line
    assert "all is well\\x1b[8m" in line  # escaped, printed as text
    assert "s3cret-pass" not in line


async def test_liveness_answers_head_as_probes_send_it(client: AsyncClient) -> None:
    response = await client.head("/health")
    assert response.status_code == 200
    assert response.content == b""
