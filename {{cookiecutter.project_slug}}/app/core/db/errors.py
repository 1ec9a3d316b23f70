"""Telling a database outage (retry later: 503) and a constraint violation (409) from a bug."""

from dataclasses import dataclass
from typing import Literal

from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

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


Kind = Literal["unique", "foreign key"]
Operation = Literal["insert", "update", "delete"]


@dataclass(frozen=True)
class ConstraintViolation:
    kind: Kind
    operation: Operation  # what the statement that broke it did
    # A unique constraint's name, as the models' naming convention gives it ("uq_tags_item_id"),
    # the same on both databases. None for a foreign key: SQLite does not say which one failed.
    constraint: str | None


POSTGRES_VIOLATIONS: dict[str, Kind] = {
    "23505": "unique",
    "23503": "foreign key",
    "23001": "foreign key",  # restrict_violation: a row still referred to (ON DELETE RESTRICT)
}
SQLITE_VIOLATIONS: dict[str, Kind] = {
    "SQLITE_CONSTRAINT_UNIQUE": "unique",
    "SQLITE_CONSTRAINT_PRIMARYKEY": "unique",
    "SQLITE_CONSTRAINT_FOREIGNKEY": "foreign key",
    # ON DELETE RESTRICT: SQLite checks it with a trigger, and says "FOREIGN KEY constraint
    # failed" (any other trigger's failure is the app's own, left alone below).
    "SQLITE_CONSTRAINT_TRIGGER": "foreign key",
}


def constraint_violation(error: IntegrityError) -> ConstraintViolation | None:
    """Which unique or foreign key constraint the statement broke, and doing what; None for
    other violations. The same answer on PostgreSQL and SQLite."""
    orig = error.orig
    operation = _operation(error.statement)
    if operation is None:
        return None
    if (kind := POSTGRES_VIOLATIONS.get(str(getattr(orig, "pgcode", "")))) is not None:
        if kind != "unique":
            return ConstraintViolation(kind, operation, None)
        # One driver gives the name in `diag`; the other on the error its adapter wraps.
        diagnostics = getattr(orig, "diag", None) or getattr(orig, "__cause__", None)
        return ConstraintViolation(kind, operation, getattr(diagnostics, "constraint_name", None))
    name = str(getattr(orig, "sqlite_errorname", ""))
    if (kind := SQLITE_VIOLATIONS.get(name)) is None:
        return None
    if name == "SQLITE_CONSTRAINT_TRIGGER" and "FOREIGN KEY" not in str(orig):
        return None
    if kind != "unique":
        return ConstraintViolation(kind, operation, None)
    # "UNIQUE constraint failed: tags.item_id, tags.name": named as the convention would.
    _, _, columns = str(orig).partition(": ")
    table, _, column = columns.split(",")[0].strip().partition(".")
    return ConstraintViolation(kind, operation, f"uq_{table}_{column}" if column else None)


def _operation(statement: str | None) -> Operation | None:
    verb = (statement or "").lstrip().split(" ", 1)[0].lower()
    return verb if verb in ("insert", "update", "delete") else None  # type: ignore[return-value]
