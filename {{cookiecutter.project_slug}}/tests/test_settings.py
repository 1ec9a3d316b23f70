"""Settings: a bad value is named clearly, and a secret in it is never shown."""

import logging

import pytest
from asgi_lifespan import LifespanManager
from pydantic import ValidationError

from app.core.concurrency import usable_cpus
from app.factory import create_app
from tests.settings import IsolatedSettings


def test_a_mistyped_url_never_shows_its_password() -> None:
    with pytest.raises(ValidationError) as caught:
        IsolatedSettings(database_url="postgersql://app:s3cret-pass@db/app")
    message = str(caught.value)
    assert "database_url" in message
    assert "unsupported database 'postgersql'" in message
    assert "s3cret-pass" not in message


def test_a_renamed_setting_is_refused_with_its_new_name() -> None:
    # As PROCESS_POOL_WORKERS=2 in the environment or .env would set it.
    with pytest.raises(ValidationError, match="PROCESS_POOL_WORKERS was renamed: set CPU_WORKERS"):
        IsolatedSettings(process_pool_workers=2)
    assert IsolatedSettings(cpu_workers=2).cpu_workers == 2


async def test_the_start_up_log_names_the_database_with_its_password_masked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Nothing listens on port 1 of the loopback interface: the app starts all the same.
    settings = IsolatedSettings(
        database_url="postgresql://app:s3cret-pass@127.0.0.1:1/app", cpu_workers=1
    )
    caplog.set_level(logging.INFO, logger="app")
    async with LifespanManager(create_app(settings)):
        pass
    assert f"Database: {settings.database_url.replace('s3cret-pass', '***')}" in caplog.messages
    assert "Database unreachable at start-up (" in caplog.text
    assert "s3cret-pass" not in caplog.text


POSTGRES = "postgresql://app@db/app"


def test_each_server_process_gets_its_share_of_the_connection_budget() -> None:
    assert IsolatedSettings(database_url=POSTGRES).db_pool_size == 10
    shared = IsolatedSettings(database_url=POSTGRES, web_concurrency=4, replicas=3)
    assert shared.db_pool_size == 80 // 12


def test_more_connections_than_the_budget_are_refused_with_the_fix() -> None:
    with pytest.raises(ValidationError) as caught:
        IsolatedSettings(database_url=POSTGRES, web_concurrency=4, db_pool_size=30)
    message = str(caught.value)
    assert "(WEB_CONCURRENCY 4 x REPLICAS 1) x DB_POOL_SIZE 30 = 120 database" in message
    assert "more than DB_CONNECTION_BUDGET (80): set DB_POOL_SIZE to 20 or less" in message
    # An embedded SQLite file has no connection limit.
    IsolatedSettings(database_url="sqlite:///./app.db", web_concurrency=4, db_pool_size=30)


def test_each_server_process_gets_its_share_of_the_cpus() -> None:
    cpus = usable_cpus()
    for workers in (1, 2, 4):
        settings = IsolatedSettings(web_concurrency=workers)
        assert settings.cpu_workers == max(1, cpus // workers - 1)
