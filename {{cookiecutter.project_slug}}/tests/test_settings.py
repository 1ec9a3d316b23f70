"""Settings: a bad value is named clearly, and a secret in it is never shown."""

import logging

import pytest
from asgi_lifespan import LifespanManager
from pydantic import ValidationError

from app.factory import create_app
from tests.settings import IsolatedSettings


def test_a_mistyped_url_never_shows_its_password() -> None:
    with pytest.raises(ValidationError) as caught:
        IsolatedSettings(database_url="postgersql://app:s3cret-pass@db/app")
    message = str(caught.value)
    assert "database_url" in message
    assert "unsupported database 'postgersql'" in message
    assert "s3cret-pass" not in message


async def test_the_start_up_log_names_the_database_with_its_password_masked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Nothing listens on port 1 of the loopback interface: the app starts all the same.
    settings = IsolatedSettings(
        database_url="postgresql://app:s3cret-pass@127.0.0.1:1/app", process_pool_workers=1
    )
    caplog.set_level(logging.INFO, logger="app")
    async with LifespanManager(create_app(settings)):
        pass
    assert f"Database: {settings.database_url.replace('s3cret-pass', '***')}" in caplog.messages
    assert "Database unreachable at start-up (" in caplog.text
    assert "s3cret-pass" not in caplog.text
