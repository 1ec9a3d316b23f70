"""Helpers of the template's tests: baking, running commands, databases."""

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg2
import pytest
import yaml
from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).parents[1]
# The CI matrix runs one mode a job (TEMPLATE_MODES=sync); TEMPLATE_DATABASES narrows a local run.
MODES = os.environ.get("TEMPLATE_MODES", "async,sync").split(",")
DATABASES = os.environ.get("TEMPLATE_DATABASES", "sqlite,postgresql").split(",")


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


def run(
    *command: str | Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion and capture its output; the caller checks the outcome."""
    return subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def bake_cli(output_dir: Path, *answers: str) -> subprocess.CompletedProcess[str]:
    """Run the `cookiecutter` command, as a user would, with NAME=VALUE answers."""
    env = {**os.environ, "COOKIECUTTER_CONFIG": str(write_config())}
    return run(
        sys.executable,
        "-m",
        "cookiecutter",
        "--no-input",
        "-o",
        output_dir,
        TEMPLATE,
        *answers,
        env=env,
    )


def mode_of(project: Path) -> str:
    """The `database_access` a project was baked with."""
    return "async" if "asyncpg" in (project / "pyproject.toml").read_text() else "sync"


def clean_env(**overrides: str) -> dict[str, str]:
    """This process's environment without database URLs or virtualenv, plus `overrides`."""
    env = {k: v for k, v in os.environ.items() if "DATABASE_URL" not in k and k != "VIRTUAL_ENV"}
    return {**env, **overrides}


def write_config() -> Path:
    """A cookiecutter config that keeps replay files out of the user's home and the output."""
    directory = Path(tempfile.mkdtemp(prefix="cookiecutter-"))
    config = directory / "config.yaml"
    config.write_text(
        f"cookiecutters_dir: {directory / 'cookiecutters'}\nreplay_dir: {directory / 'replay'}\n"
    )
    return config


def create_database(admin_url: str, name: str, encoding: str = "UTF8") -> str:
    """(Re)create database `name` on the server of `admin_url`; return its URL."""
    connection = psycopg2.connect(admin_url)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        # template0 and the C locale: the only way to a database in another encoding.
        cursor.execute(
            f"CREATE DATABASE \"{name}\" ENCODING %s TEMPLATE template0 LOCALE 'C'", (encoding,)
        )
    connection.close()
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}"


def workflow_hardening_problems(workflow: Path) -> list[str]:
    """What a GitHub workflow lacks of the usual hardening: actions pinned by commit (with the
    version in a comment), checkouts that keep no credentials, a time limit on every job."""
    text = workflow.read_text()
    problems = [
        f"not pinned by commit: {line.strip()}"
        for line in text.splitlines()
        if "uses:" in line and not re.search(r"uses: \S+@[0-9a-f]{40} # v\d", line)
    ]
    for name, job in yaml.safe_load(text)["jobs"].items():
        if "timeout-minutes" not in job:
            problems.append(f"job {name} has no timeout-minutes")
        checkouts = [
            step for step in job.get("steps", []) if "actions/checkout@" in step.get("uses", "")
        ]
        if any(step.get("with", {}).get("persist-credentials") is not False for step in checkouts):
            problems.append(f"job {name} checks out with persisted credentials")
    return problems


def database_url(database: str, project: Path, name: str, request: pytest.FixtureRequest) -> str:
    if database == "sqlite":
        return f"sqlite:///{project / f'{name}.db'}"
    admin_url: str = request.getfixturevalue("postgres_admin_url")
    return create_database(admin_url, name)


# The reasons a bake's PostgreSQL-only tests give for skipping on SQLite.
POSTGRESQL_ONLY = ("PostgreSQL only: set TEST_DATABASE_URL",)


def passes_its_own_suite(project: Path, database: str, request: pytest.FixtureRequest) -> None:
    """Run the project's own suite on `database` (SQLite under coverage, or a database of its own
    on the tests' PostgreSQL server): green, with nothing skipped but, on SQLite, its
    PostgreSQL-only tests."""
    mode = mode_of(project)
    name = f"suite_{mode}_{project.parent.name.replace('-', '_')}"
    env = clean_env()
    options = ["-q", "-p", "no:cacheprovider"]
    if database == "postgresql":
        env["TEST_DATABASE_URL"] = database_url(database, project, name, request)
    else:  # under coverage, as CI usually runs it: its tracer is not the app's blocking
        options.append("--cov=app")
        env["COVERAGE_FILE"] = str(request.getfixturevalue("tmp_path") / ".coverage")
    result = run(sys.executable, "-m", "pytest", *options, cwd=project, env=env)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    print(f"{project.parent.name} on {database}: {summary}")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    assert " passed" in summary
    assert "failed" not in summary
    # Nothing skipped but the PostgreSQL-only tests, on SQLite.
    skips = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    allowed = POSTGRESQL_ONLY if database == "sqlite" else ()
    assert all(any(reason in line for reason in allowed) for line in skips), skips
