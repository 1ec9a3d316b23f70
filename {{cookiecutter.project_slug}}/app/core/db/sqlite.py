"""SQLite connection set-up shared by the sync and async drivers.

Python's sqlite3 module begins transactions on its own terms and breaks SAVEPOINTs; handing
transaction control to SQLAlchemy (the recipe in SQLAlchemy's SQLite docs) makes commit,
rollback and nested transactions behave as they do on PostgreSQL.

Several connections (and server processes) share one file: write-ahead logging lets readers
and a writer work at once, and `BEGIN IMMEDIATE` takes the write lock up front, waiting for it
up to the connection's `timeout`. A deferred `BEGIN` would fail at once with "database is
locked" when a transaction that has read tries to write after another one committed. Sessions
that only read (isolation level AUTOCOMMIT) begin no transaction.

A database file this creates is readable and writable by its owner only (SQLite gives its WAL
and shared-memory files the same mode).
"""

import os
from typing import Any

from sqlalchemy import Connection, Engine, event


def configure_sqlite(engine: Engine) -> None:
    path = engine.url.database
    if path and path != ":memory:" and not path.startswith("file:"):
        # Created here, before SQLite would create it with the umask's wider mode.
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if connection.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
