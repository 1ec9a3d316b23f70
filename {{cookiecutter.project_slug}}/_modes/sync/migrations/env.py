"""Alembic environment, on the app's engine.

`alembic upgrade head` migrates the database of DATABASE_URL. Code that holds a connection
already (the tests) hands it over instead: `config.attributes["connection"]`.
"""

from logging.config import fileConfig
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection
from sqlalchemy.types import TypeDecorator

from app.core.db.engine import create_engine
from app.models import Base
from app.resources import database_options
from app.settings import Settings

config = context.config
# alembic.ini's logging is for the `alembic` command; a program that runs migrations itself (the
# tests) sets configure_logger False and keeps its own handlers (Alembic's cookbook).
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)
target_metadata = Base.metadata


def render_item(kind: str, item: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Write the models' own column types (UTCDateTime) as the SQLAlchemy types they store:
    a migration must not import the app's code, which changes after the migration is written."""
    if kind == "type" and isinstance(item, TypeDecorator):
        return f"sa.{item.impl_instance!r}"
    return False  # alembic's default rendering


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite can only ALTER tables by copying them
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_on_engine() -> None:
    engine = create_engine(database_options(Settings()))
    try:
        with engine.connect() as connection:
            run_migrations(connection)
    finally:
        engine.dispose()


def run_migrations_offline() -> None:
    context.configure(
        url=Settings().database_url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
elif (connection := config.attributes.get("connection")) is not None:
    run_migrations(connection)
else:
    run_migrations_on_engine()
