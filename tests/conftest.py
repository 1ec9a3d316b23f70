"""Fixtures: bakes of the template, and a PostgreSQL server for their test suites."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import MODES, bake
from tests.postgres import require_bindir, throwaway_postgres


@pytest.fixture(scope="session", params=MODES, ids=[f"database_access:{m}" for m in MODES])
def baked(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bake with the default answers but `database_access`, shared by read-only checks."""
    return bake(tmp_path_factory.mktemp(f"bake-{request.param}"), database_access=request.param)


@pytest.fixture(scope="session", params=MODES, ids=[f"database_access:{m}" for m in MODES])
def baked_with_queue(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A bake with the task queue (task_queue=celery), otherwise as `baked`."""
    output = tmp_path_factory.mktemp(f"bake-{request.param}-celery")
    return bake(output, database_access=request.param, task_queue="celery")


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """A server the tests may create databases on: TEST_POSTGRES_URL, or a throwaway one."""
    if url := os.environ.get("TEST_POSTGRES_URL"):
        yield url
        return
    bindir = require_bindir("set TEST_POSTGRES_URL to use a running server")
    with throwaway_postgres(bindir) as server:
        yield server.url
