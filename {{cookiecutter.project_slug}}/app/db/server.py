"""What the app checks of its database server at start-up, before it serves a request."""

import logging

from sqlalchemy import URL
from sqlalchemy.exc import DBAPIError

from app.db.errors import is_outage

logger = logging.getLogger(__name__)

ENCODING_QUERY = "SHOW server_encoding"


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
