"""Each bake as it is deployed: what it refuses at start-up, and the edges of its server."""

import sys
from pathlib import Path

from tests.helpers import clean_env, create_database, mode_of, run


def test_a_database_not_in_utf8_is_refused_at_start_up(
    baked: Path, postgres_admin_url: str
) -> None:
    url = create_database(postgres_admin_url, f"latin1_{mode_of(baked)}", encoding="LATIN1")
    env = clean_env(DATABASE_URL=url, PROCESS_POOL_WORKERS="1")
    command = [sys.executable, "-m", "uvicorn", "app.main:app", "--port", "0"]
    result = run(*command, cwd=baked, env=env, timeout=60)
    assert result.returncode != 0, result.stderr
    assert "stores text as LATIN1, not UTF-8" in result.stderr
    assert "createdb --encoding=UTF8 --template=template0" in result.stderr
