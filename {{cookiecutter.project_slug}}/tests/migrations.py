"""Alembic, driven from the tests on a connection they hold (see migrations/env.py)."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

ALEMBIC_INI = Path(__file__).parents[1] / "alembic.ini"


def alembic_config(connection: Connection) -> Config:
    config = Config(ALEMBIC_INI)
    config.attributes["connection"] = connection
    config.attributes["configure_logger"] = False  # the test runner's logging stays as it is
    return config


def migrate_from_scratch(connection: Connection) -> None:
    """Down to an empty database, then up to the latest revision: both directions work."""
    config = alembic_config(connection)
    command.downgrade(config, "base")
    command.upgrade(config, "head")


def check_for_drift(connection: Connection) -> None:
    """`alembic check`: autogenerate finds nothing to add (raises if it does)."""
    command.check(alembic_config(connection))
