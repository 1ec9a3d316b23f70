"""SQLite connection set-up shared by the sync and async drivers.

Python's sqlite3 module begins transactions on its own terms and breaks SAVEPOINTs; handing
transaction control to SQLAlchemy (the recipe in SQLAlchemy's SQLite docs) makes commit,
rollback and nested transactions behave as they do on PostgreSQL.
"""

from typing import Any

from sqlalchemy import Engine, event


def configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")
