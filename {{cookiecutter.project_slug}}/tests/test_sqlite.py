"""The embedded SQLite database keeps its data private."""

import stat
from pathlib import Path

from app.core.db.engine import create_engine
from app.resources import database_options
from tests.settings import IsolatedSettings


def test_a_new_database_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "private.db"
    create_engine(database_options(IsolatedSettings(database_url=f"sqlite:///{path}")))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
