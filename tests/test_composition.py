"""One request, one connection: database dependencies compose without a deadlock, in both modes
and on both databases, served; and what the tests' client sees is what is served.

A copy of each bake gets routes that take the usual auth dependency (a session) beside a read
connection, in either order, and one that reads through a server-side cursor
(tests/cases/composition/).
"""

import shutil
import sqlite3
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg2
import psycopg2.extras
import pytest

from tests.helpers import DATABASES, clean_env, create_database, mode_of, run
from tests.serve import production, server_workers, serving

CASES = Path(__file__).parent / "cases" / "composition"
CONCURRENT = 100


@pytest.fixture(scope="module", params=DATABASES, ids=[f"database:{d}" for d in DATABASES])
def database(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def composed(
    baked: Path, tmp_path: Path, database: str, request: pytest.FixtureRequest
) -> tuple[Path, str]:
    """The bake with the composing routes, and a database URL for it."""
    project = tmp_path / baked.name
    shutil.copytree(baked, project)
    mode = mode_of(project)
    shutil.copy(CASES / f"routes_{mode}.py", project / "app/api/routes/composed.py")
    shutil.copy(CASES / "test_composed.py", project / "tests/test_composed.py")
    router = project / "app/api/router.py"
    added = "from app.api.routes import composed  # noqa: E402\n\n"
    added += "router.include_router(composed.router)"
    router.write_text(f"{router.read_text()}\n{added}\n")
    if database == "sqlite":
        return project, f"sqlite:///{project / 'app.db'}"
    return project, create_database(
        request.getfixturevalue("postgres_admin_url"), f"composed_{mode}"
    )


def test_two_database_dependencies_hold_one_connection(
    baked: Path, database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A pool of 2 and 100 requests at once, each taking a session and a read connection:
    were each to hold one connection and wait for a second, all would wait (503s)."""
    project, url = composed(baked, tmp_path, database, request)
    env = clean_env(DATABASE_URL=url, DB_POOL_SIZE="2", CPU_WORKERS="1")
    migrated = run(sys.executable, "-m", "alembic", "upgrade", "head", cwd=project, env=env)
    assert migrated.returncode == 0, migrated.stderr
    with serving(production(), project, env) as client:
        assert client.post("/api/v1/items", json={"title": "one"}).status_code == 201
        limits = httpx.Limits(max_connections=CONCURRENT)
        with httpx.Client(base_url=client.base_url, limits=limits, timeout=30) as many:
            for path in ("/composed", "/composed/reversed"):
                with ThreadPoolExecutor(CONCURRENT) as pool:
                    answers = list(pool.map(many.get, [path] * CONCURRENT))
                statuses = [answer.status_code for answer in answers]
                assert statuses == [200] * CONCURRENT, {s: statuses.count(s) for s in statuses}
                assert answers[0].json() == {"user": "ada", "items": 1}
        # A server-side cursor on the read connection works served as under the tests.
        assert client.get("/composed/stream").json() == ["one"]


def test_the_tests_client_sees_what_is_served(
    baked: Path, database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    project, url = composed(baked, tmp_path, database, request)
    env = clean_env()
    if database == "postgresql":
        env["TEST_DATABASE_URL"] = url
    result = run(
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/test_composed.py",
        cwd=project,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "2 passed" in result.stdout


EXPORTED = 50_000


def insert_items(url: str, count: int) -> None:
    """Many items at once, straight into the database (the API would take minutes)."""
    rows = [(f"item {n}", "a description of some length, as exports carry") for n in range(count)]
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
            connection.executemany("INSERT INTO items (title, description) VALUES (?, ?)", rows)
        return
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        psycopg2.extras.execute_values(
            cursor, "INSERT INTO items (title, description) VALUES %s", rows
        )


def peak_memory_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0])


def test_a_large_export_streams_in_constant_memory(
    baked: Path, database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """50,000 rows out of the database, served: every row arrives, and the server's peak memory
    grows by far less than the rows would take held at once."""
    project, url = composed(baked, tmp_path, database, request)
    env = clean_env(DATABASE_URL=url, CPU_WORKERS="1")
    migrated = run(sys.executable, "-m", "alembic", "upgrade", "head", cwd=project, env=env)
    assert migrated.returncode == 0, migrated.stderr
    insert_items(url, EXPORTED)
    with serving(production(), project, env) as client:
        [pid] = server_workers(client)
        assert client.get("/api/v1/items", params={"limit": 100}).status_code == 200  # warm
        before = peak_memory_kib(int(pid))
        lines = 0
        with client.stream("GET", "/api/v1/items/export", timeout=120) as response:
            assert response.status_code == 200
            for _ in response.iter_lines():
                lines += 1
        grown = peak_memory_kib(int(pid)) - before
    assert lines == EXPORTED + 1  # and the header
    # Held at once, 50,000 rows take tens of megabytes (rows, then CSV text); streamed in
    # slices of 500, the peak barely moves.
    print(f"{mode_of(project)} on {database}: peak memory grew by {grown} KiB")
    assert grown < 15_000, f"the server's peak memory grew by {grown} KiB"
