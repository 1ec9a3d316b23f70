from alembic import command
from sqlalchemy import Engine

from tests.migrations import alembic_config


def test_models_and_migrations_do_not_drift(engine: Engine) -> None:
    """`alembic check`: autogenerate finds nothing to add (raises if it does)."""
    with engine.connect() as connection:
        command.check(alembic_config(connection))
