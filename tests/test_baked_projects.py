"""Each bake works: its own test suite passes on SQLite and PostgreSQL, and it serves over HTTP."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.helpers import (
    DATABASES,
    MODES,
    bake,
    clean_env,
    database_url,
    mode_of,
    passes_its_own_suite,
    run,
)
from tests.serve import migrated_copy, production, serving


@pytest.fixture(scope="module", params=DATABASES, ids=[f"database:{d}" for d in DATABASES])
def database(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_own_test_suite_passes(baked: Path, database: str, request: pytest.FixtureRequest) -> None:
    passes_its_own_suite(baked, database, request)


def test_own_test_suite_passes_with_the_task_queue(
    baked_with_queue: Path, request: pytest.FixtureRequest
) -> None:
    # On SQLite: its database code is the plain bake's, whose suite runs on PostgreSQL too.
    passes_its_own_suite(baked_with_queue, "sqlite", request)


def test_migrates_and_serves_the_http_contract(
    baked: Path, database: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """`alembic upgrade head` then `scripts/serve.sh`, as its README says, over real HTTP."""
    mode = mode_of(baked)
    url = database_url(database, tmp_path / baked.name, f"serve_{mode}", request)
    env = clean_env(DATABASE_URL=url)
    project = migrated_copy(baked, tmp_path, env)
    with serving(production(), project, env) as client:
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/health/ready").json() == {"status": "ok"}
        created = client.post("/api/v1/items", json={"title": "served", "description": "d"})
        assert created.status_code == 201
        item = created.json()
        assert item["created_at"].endswith(("Z", "+00:00"))
        assert client.get(f"/api/v1/items/{item['id']}").json() == item
        assert client.get("/api/v1/items").json() == [item]
        patched = client.patch(f"/api/v1/items/{item['id']}", json={"title": "renamed"})
        assert patched.json() == {**item, "title": "renamed"}
        assert client.post("/api/v1/items", json={"title": ""}).status_code == 422
        assert client.get("/api/v1/items", params={"limit": 101}).status_code == 422
        assert client.delete(f"/api/v1/items/{item['id']}").status_code == 204
        assert client.get(f"/api/v1/items/{item['id']}").json() == {"detail": "Item not found"}
        # Concurrent deletes of one item: one deletes it, every other one finds none.
        doomed = client.post("/api/v1/items", json={"title": "doomed"}).json()["id"]
        with ThreadPoolExecutor(8) as pool:
            deletes = list(pool.map(lambda _: delete(client, doomed), range(8)))
        assert sorted(deletes) == [204] + [404] * 7
        primes = client.get("/api/v1/examples/primes", params={"below": 1000})
        assert primes.json() == {"below": 1000, "count": 168}
        assert client.get("/api/v1/examples/primes", params={"below": 1}).status_code == 422


def delete(client: httpx.Client, item_id: int) -> int:
    with httpx.Client(base_url=client.base_url, timeout=10) as own:  # a connection each
        return own.delete(f"/api/v1/items/{item_id}").status_code


@pytest.mark.parametrize("mode", MODES, ids=[f"database_access:{m}" for m in MODES])
def test_installs_from_its_own_pyproject_and_its_scripts_work(mode: str, tmp_path: Path) -> None:
    """A fresh venv from the bake's own pyproject.toml (plain pip): catches a dependency it
    forgot. Lint, types and the whole suite are checked elsewhere; here one test file runs."""
    project = bake(tmp_path, database_access=mode)
    env = clean_env()
    installed = run("./scripts/setup.sh", cwd=project, env=env)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    smoke = ["-q", "-p", "no:cacheprovider", "tests/test_health.py"]
    tested = run(".venv/bin/pytest", *smoke, cwd=project, env=env)
    assert tested.returncode == 0, tested.stdout[-5000:] + tested.stderr[-5000:]
    assert " passed" in tested.stdout
    for tool in ("ruff", "mypy", "alembic", "fastapi"):  # what scripts/test.sh and the README run
        assert (project / ".venv" / "bin" / tool).exists(), tool

    with serving(["./scripts/run.sh"], project, env) as client:
        assert client.get("/health/ready").json() == {"status": "ok"}
    assert (project / "app.db").exists(), "the embedded SQLite default was not used"
