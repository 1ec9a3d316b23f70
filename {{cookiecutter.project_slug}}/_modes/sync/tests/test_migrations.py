from sqlalchemy import Engine

from tests.migrations import check_for_drift


def test_models_and_migrations_do_not_drift(engine: Engine) -> None:
    with engine.connect() as connection:
        check_for_drift(connection)
