"""Naive tests: each checks only the status code. The loop guard must fail the blocking ones.

Copied into a bake as tests/test_blocking.py by tests/test_loop_guard.py, which expects every
`test_blocking*` test to fail with the guard's message and every `test_correct*` one to pass.
"""

import os

import pytest
from httpx import AsyncClient

BLOCKING = [
    "sleep",
    "sleep-swallowed",
    "cpu",
    "busy-100ms",
    "c-extension",
    "sqlite3",
    "sync-engine",
    "http-client",
    "dependency",
    "middleware",
]
CORRECT = ["async-sleep", "sleep-in-thread", "cpu-in-process-pool", "sleep-in-def"]


@pytest.mark.parametrize("route", BLOCKING)
async def test_blocking(client: AsyncClient, route: str) -> None:
    response = await client.get(f"/blocking/{route}")
    assert response.status_code == 200


async def test_blocking_psycopg2(client: AsyncClient) -> None:
    response = await client.get("/blocking/psycopg2", params={"dsn": os.environ["BLOCKING_DSN"]})
    assert response.status_code == 200


@pytest.mark.parametrize("route", CORRECT)
async def test_correct(client: AsyncClient, route: str) -> None:
    response = await client.get(f"/blocking/{route}")
    assert response.status_code == 200


@pytest.mark.allow_blocking(reason="proves that a test can opt out")
async def test_correct_when_opted_out(client: AsyncClient) -> None:
    response = await client.get("/blocking/sleep")
    assert response.status_code == 200


async def test_session_in_async_def(client: AsyncClient) -> None:
    """Correct in async mode (the session's calls are awaited), blocking in sync mode."""
    response = await client.get("/blocking/session")
    assert response.status_code == 200
