"""Naive tests: each checks only the status code. The loop guard must fail the blocking ones.

Copied into a bake as tests/test_blocking.py by tests/test_loop_guard.py.
"""

import os

import pytest
from httpx import AsyncClient

BLOCKING = [
    "sleep",
    "sleep-swallowed",
    "cpu",
    "c-extension",
    "sqlite3",
    "sync-engine",
    "http-client",
    "dependency",
    "middleware",
]
CORRECT = ["async-sleep", "sleep-in-thread", "cpu-in-process-pool", "sleep-in-def"]


@pytest.mark.parametrize("route", BLOCKING + CORRECT + ["session"])
async def test_route(client: AsyncClient, route: str) -> None:
    response = await client.get(f"/blocking/{route}")
    assert response.status_code == 200


async def test_route_psycopg2(client: AsyncClient) -> None:
    dsn = os.environ["BLOCKING_DSN"]
    response = await client.get("/blocking/psycopg2", params={"dsn": dsn})
    assert response.status_code == 200


@pytest.mark.allow_blocking(reason="proves that a test can opt out")
async def test_opted_out(client: AsyncClient) -> None:
    response = await client.get("/blocking/sleep")
    assert response.status_code == 200
