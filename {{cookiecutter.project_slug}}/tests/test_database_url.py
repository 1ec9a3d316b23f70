import re

import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient
from pydantic import ValidationError
from sqlalchemy import make_url

from app.core.database_url import to_driver_url
from app.core.db.drivers import DRIVERS
from app.factory import create_app
from app.settings import Settings
from tests.settings import IsolatedSettings

POSTGRESQL, SQLITE = DRIVERS["postgresql"], DRIVERS["sqlite"]


@pytest.mark.parametrize(
    ("pasted", "used"),
    [
        ("postgresql://u:p@db:5432/app", f"postgresql+{POSTGRESQL}://u:p@db:5432/app"),
        ("postgres://u:p@db/app", f"postgresql+{POSTGRESQL}://u:p@db/app"),
        (f"postgresql+{POSTGRESQL}://u@db/app", f"postgresql+{POSTGRESQL}://u@db/app"),
        ("sqlite:///./app.db", f"sqlite+{SQLITE}:///./app.db"),
        (f"sqlite+{SQLITE}:////tmp/x.db", f"sqlite+{SQLITE}:////tmp/x.db"),
    ],
)
def test_plain_urls_get_the_projects_drivers(pasted: str, used: str) -> None:
    assert to_driver_url(pasted) == used


async def test_libpq_parameters_reach_the_driver_under_its_own_names(settings: Settings) -> None:
    """`?sslmode=` as libpq spells it: a driver that took it under the wrong name would refuse
    to connect (asyncpg spells it `ssl`)."""
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only: set TEST_DATABASE_URL to run it")
    url = make_url(settings.database_url).update_query_dict({"sslmode": "disable"})
    pasted = url.render_as_string(hide_password=False)
    app = create_app(IsolatedSettings(database_url=pasted, cpu_workers=1))
    async with (
        LifespanManager(app),
        AsyncClient(transport=ASGITransport(app=app), base_url="http://localhost") as client,
    ):
        response = await client.get("/health/ready")
    assert response.status_code == 200, response.text


# Each mode's drivers contradict the other mode; pg8000 and pysqlcipher neither.
OTHER_DRIVERS = [
    f"{backend}+{driver}://u@db/app"
    for backend, drivers in [
        ("postgresql", ["asyncpg", "psycopg2", "pg8000"]),
        ("sqlite", ["aiosqlite", "pysqlite", "pysqlcipher"]),
    ]
    for driver in drivers
    if driver != DRIVERS[backend]
]


@pytest.mark.parametrize("url", OTHER_DRIVERS)
def test_a_driver_of_another_kind_names_this_projects_own(url: str) -> None:
    backend = url.split("+")[0]
    with pytest.raises(ValidationError, match=re.escape(f"use {backend}+{DRIVERS[backend]}://")):
        IsolatedSettings(database_url=url)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u@db/app", "unsupported database 'mysql'"),
        ("not a url", "not a database URL"),
    ],
)
def test_a_url_that_does_not_fit_is_a_clear_startup_error(url: str, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        IsolatedSettings(database_url=url)
