"""Fixtures: bakes of the template, and a PostgreSQL server for their test suites."""

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from cookiecutter.main import cookiecutter

from tests.postgres import find_bindir, throwaway_postgres

TEMPLATE = Path(__file__).parents[1]
MODES = ["async", "sync"]


def bake(output_dir: Path, **answers: str) -> Path:
    """Bake the template with these answers (the rest default) and return the project."""
    project = cookiecutter(
        str(TEMPLATE),
        no_input=True,
        extra_context=answers,
        output_dir=str(output_dir),
        config_file=str(write_config()),
    )
    return Path(project)


def bake_cli(output_dir: Path, *answers: str) -> subprocess.CompletedProcess[str]:
    """Run the `cookiecutter` command, as a user would, with NAME=VALUE answers."""
    return subprocess.run(
        [sys.executable, "-m", "cookiecutter", "--no-input", "-o", str(output_dir),
         str(TEMPLATE), *answers],
        capture_output=True,
        text=True,
        env={**os.environ, "COOKIECUTTER_CONFIG": str(write_config())},
    )


def write_config() -> Path:
    """A cookiecutter config that keeps replay files out of the user's home and the output."""
    directory = Path(tempfile.mkdtemp(prefix="cookiecutter-"))
    config = directory / "config.yaml"
    config.write_text(
        f"cookiecutters_dir: {directory / 'cookiecutters'}\nreplay_dir: {directory / 'replay'}\n"
    )
    return config


@pytest.fixture(scope="session", params=MODES, ids=[f"database_access:{m}" for m in MODES])
def baked(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project baked with the defaults but for `database_access`, shared by the read-only checks."""
    return bake(tmp_path_factory.mktemp(f"bake-{request.param}"), database_access=request.param)


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """A PostgreSQL server whose databases the tests may create: TEST_POSTGRES_URL, or a throwaway one."""
    if url := os.environ.get("TEST_POSTGRES_URL"):
        yield url
        return
    bindir = find_bindir()
    if bindir is None:
        message = "no PostgreSQL binaries found (set TEST_POSTGRES_URL to use a running server)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with throwaway_postgres(bindir) as url:
        yield url


def create_database(admin_url: str, name: str) -> str:
    """(Re)create database `name` on the server of `admin_url`; return its URL."""
    connection = psycopg2.connect(admin_url)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{name}"')
    connection.close()
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}"
