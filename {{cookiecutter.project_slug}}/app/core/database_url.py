"""Map the database URLs people paste to this project's drivers (see app.core.db.drivers)."""

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from app.core.db.drivers import ACCESS, DRIVERS, RENAMED_PARAMETERS


def to_driver_url(raw: str) -> str:
    """Return `raw` with this project's driver (`postgresql://` -> `postgresql+<driver>://`).

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
            f"driver {driver!r} does not fit this project's {ACCESS} database access; "
            f"use {backend}+{expected}://... or plain {backend}://..."
        )
    if backend == "postgresql":
        for libpq_name, name in RENAMED_PARAMETERS.items():
            if libpq_name in url.query:
                value = url.query[libpq_name]
                url = url.difference_update_query([libpq_name]).update_query_dict({name: value})
    return url.set(drivername=f"{backend}+{expected}").render_as_string(hide_password=False)
