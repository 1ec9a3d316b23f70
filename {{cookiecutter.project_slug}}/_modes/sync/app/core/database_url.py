"""Map the database URLs people paste to this project's sync drivers."""

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

DRIVERS = {"postgresql": "psycopg2", "sqlite": "pysqlite"}


def to_driver_url(raw: str) -> str:
    """Return `raw` with this project's driver (`postgresql://` -> `postgresql+psycopg2://`).

    Raises ValueError, naming the fix, for a database or driver this project does not use.
    """
    try:
        url = make_url(raw)
    except ArgumentError:
        raise ValueError(
            "not a database URL; use postgresql://user:password@host/dbname or sqlite:///./app.db"
        ) from None
    backend, _, driver = url.drivername.partition("+")
    backend = "postgresql" if backend == "postgres" else backend
    if backend not in DRIVERS:
        raise ValueError(f"unsupported database {backend!r}; use postgresql://... or sqlite:///...")
    expected = DRIVERS[backend]
    if driver and driver != expected:
        raise ValueError(
            f"driver {driver!r} does not fit this project's sync database access; "
            f"use {backend}+{expected}://... or plain {backend}://..."
        )
    return url.set(drivername=f"{backend}+{expected}").render_as_string(hide_password=False)
