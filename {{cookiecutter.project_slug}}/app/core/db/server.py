"""What the app checks of its database server: at start-up, and on every new connection."""

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import URL, Engine, event
from sqlalchemy.exc import DBAPIError

from app.core.db.errors import is_outage

logger = logging.getLogger(__name__)


class UnsupportedDatabaseError(RuntimeError):
    """The database cannot store what the app accepts: starting would fail requests later."""


def announce(url: URL) -> None:
    logger.info("Database: %s", url.render_as_string(hide_password=True))


def require_utf8(encoding: str, url: URL) -> None:
    """Refuse a database that cannot store every character a client may send."""
    if encoding != "UTF8":
        raise UnsupportedDatabaseError(
            f"Database {url.database!r} stores text as {encoding}, not UTF-8, so valid text "
            "from clients would fail to be stored. Create it with UTF-8 encoding, e.g. "
            f"`createdb --encoding=UTF8 --template=template0 {url.database}`, and migrate it."
        )


def require_utf8_on_connect(engine: Engine, server_encoding: Callable[[Any], str]) -> None:
    """Check the encoding of every new connection's database (the server reports it as the
    connection opens: no round trip), so that a database that was down at start-up, or was
    replaced since, is refused too before a request stores text in it."""

    @event.listens_for(engine, "connect")
    def check(dbapi_connection: Any, _: object) -> None:
        require_utf8(server_encoding(dbapi_connection), engine.url)


def forgive_outage(error: Exception) -> bool:
    """Whether start-up goes on despite `error`: an outage is logged and forgiven (requests get
    503s until it ends); any other error is not."""
    if isinstance(error, OSError | TimeoutError) or (
        isinstance(error, DBAPIError) and is_outage(error)
    ):
        logger.warning(
            "Database unreachable at start-up (%s): requests that need it answer 503 until it "
            "is back",
            type(error).__name__,
        )
        return True
    return False
