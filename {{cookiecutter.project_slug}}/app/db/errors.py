"""Telling a database outage (retry later: 503) from a bug (500)."""

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

# SQLSTATE classes of a server that is unreachable or refusing work: connection exceptions,
# authorization, unknown database, insufficient resources (too many connections), operator
# intervention (shutdown, statement_timeout).
POSTGRES_OUTAGE_CLASSES = frozenset({"08", "28", "3D", "53", "57"})
# SQLite primary result codes for a database file that is busy, locked, unreadable or full.
SQLITE_OUTAGE_CODES = frozenset({5, 6, 10, 13, 14})  # BUSY, LOCKED, IOERR, FULL, CANTOPEN


class DatabaseUnavailableError(Exception):
    """The database cannot serve this request now; the client may retry later."""


def is_outage(error: DBAPIError) -> bool:
    if error.connection_invalidated:
        return True
    sqlstate = getattr(error.orig, "pgcode", None)  # PostgreSQL's error code, in both drivers
    if sqlstate:
        return str(sqlstate)[:2] in POSTGRES_OUTAGE_CLASSES
    sqlite_code = getattr(error.orig, "sqlite_errorcode", None)
    if sqlite_code is not None:
        return int(sqlite_code) & 0xFF in SQLITE_OUTAGE_CODES
    # Raised with no error code when the driver cannot connect at all.
    return isinstance(error, OperationalError | InterfaceError)
