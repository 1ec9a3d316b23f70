import re

import pytest
from pydantic import ValidationError

from app.core.database_url import to_driver_url
from tests.settings import IsolatedSettings


@pytest.mark.parametrize(
    ("pasted", "used"),
    [
        ("postgresql://u:p@db:5432/app", "postgresql+psycopg2://u:p@db:5432/app"),
        ("postgres://u:p@db/app", "postgresql+psycopg2://u:p@db/app"),
        ("postgresql+psycopg2://u@db/app", "postgresql+psycopg2://u@db/app"),
        ("postgresql://u@db/app?sslmode=require", "postgresql+psycopg2://u@db/app?sslmode=require"),
        ("sqlite:///./app.db", "sqlite+pysqlite:///./app.db"),
        ("sqlite+pysqlite:////tmp/x.db", "sqlite+pysqlite:////tmp/x.db"),
    ],
)
def test_plain_urls_get_the_sync_drivers(pasted: str, used: str) -> None:
    assert to_driver_url(pasted) == used


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql+asyncpg://u@db/app", "use postgresql+psycopg2://"),
        ("sqlite+aiosqlite:///x.db", "use sqlite+pysqlite://"),
        ("mysql://u@db/app", "unsupported database 'mysql'"),
        ("not a url", "not a database URL"),
    ],
)
def test_a_url_that_does_not_fit_is_a_clear_startup_error(url: str, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        IsolatedSettings(database_url=url)
