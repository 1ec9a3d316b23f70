"""Each bake fits the tools its users already have, checked without Docker or GitHub.

No Docker engine runs here: the Dockerfile is linted (hadolint, from PyPI), every path it copies
must exist once the README's first-setup step (`uv lock`) has run, and the compose file is
validated against the compose specification's schema. Dependabot's file against its schema;
the pre-commit configuration by pre-commit itself, with its hygiene hooks run directly (they
install from GitHub, which is out of reach here; ruff and mypy run in test_bake.py).
"""

import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import clean_env, run
from tests.serve import migrated_copy, serving

BIN = Path(sys.executable).parent


def check_schema(schema: str, path: Path) -> None:
    result = run(sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def locked(baked: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean copy of the bake after the README's uv path: `uv sync` writes uv.lock."""
    project = tmp_path_factory.mktemp("uv") / baked.name
    shutil.copytree(baked, project)
    result = run(sys.executable, "-m", "uv", "sync", cwd=project, env=clean_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "uv.lock").is_file()
    return project


def test_the_uv_path_installs_from_the_lock_and_tests(locked: Path) -> None:
    env = clean_env()
    again = run(sys.executable, "-m", "uv", "sync", "--locked", cwd=locked, env=env)
    assert again.returncode == 0, again.stderr
    tested = run(
        sys.executable, "-m", "uv", "run", "pytest", "-q", "-p", "no:cacheprovider",
        "tests/test_health.py", cwd=locked, env=env,
    )  # fmt: skip
    assert tested.returncode == 0, tested.stdout[-3000:] + tested.stderr[-2000:]


def test_the_dockerfile_lints_clean(baked: Path) -> None:
    result = run(BIN / "hadolint", baked / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dockerfile_copies_what_exists_and_serves_as_documented(locked: Path) -> None:
    dockerfile = (locked / "Dockerfile").read_text()
    copies = re.findall(r"^COPY (?!--from)(.+?) \S+$", dockerfile, flags=re.MULTILINE)
    sources = [source for line in copies for source in line.split()]
    assert "uv.lock" in sources
    assert [source for source in sources if not (locked / source).exists()] == []
    assert re.search(r"^USER 10001:10001$", dockerfile, flags=re.MULTILINE), "not root"
    assert "uv sync --locked --no-dev" in dockerfile
    assert "http://127.0.0.1:8000/health" in dockerfile  # HEALTHCHECK
    cmd = re.search(r'^CMD \["./scripts/serve.sh"\]$', dockerfile, flags=re.MULTILINE)
    assert cmd, "the production command, in exec form (it execs granian: signals reach it)"
    assert "exec granian " in (locked / "scripts/serve.sh").read_text()
    ignored = (locked / ".dockerignore").read_text().split()
    assert {".venv", ".env", ".git", "*.db"} <= set(ignored)


def test_the_compose_file_is_valid_and_runs_the_documented_commands(baked: Path) -> None:
    compose = baked / "compose.yaml"
    check_schema("vendor.compose-spec", compose)
    services = yaml.safe_load(compose.read_text())["services"]
    assert "healthcheck" in services["db"]
    assert services["migrate"]["command"] == ["alembic", "upgrade", "head"]
    waits_for = services["app"]["depends_on"]
    assert waits_for["migrate"]["condition"] == "service_completed_successfully"
    assert waits_for["db"]["condition"] == "service_healthy"
    assert services["app"]["environment"]["DATABASE_URL"].startswith("postgresql://")
    readme = (baked / "README.md").read_text()
    assert "docker compose up --build" in readme
    assert "alembic upgrade head" in readme


def test_dependabot_watches_python_and_actions(baked: Path) -> None:
    config = baked / ".github" / "dependabot.yml"
    check_schema("vendor.dependabot", config)
    ecosystems = {
        update["package-ecosystem"] for update in yaml.safe_load(config.read_text())["updates"]
    }
    assert ecosystems == {"uv", "github-actions"}


def test_the_pre_commit_configuration_is_valid_and_its_hooks_pass(
    baked: Path, tmp_path: Path
) -> None:
    config = baked / ".pre-commit-config.yaml"
    result = run(BIN / "pre-commit", "validate-config", config)
    assert result.returncode == 0, result.stdout + result.stderr
    hooks = {
        hook["id"] for repo in yaml.safe_load(config.read_text())["repos"] for hook in repo["hooks"]
    }
    assert {"ruff-check", "ruff-format", "mypy", "end-of-file-fixer", "check-toml"} <= hooks
    # The files pre-commit would check: those git tracks in a fresh repository of the bake.
    project = tmp_path / baked.name
    shutil.copytree(baked, project)
    run("git", "init", "-q", cwd=project)
    run("git", "add", "-A", cwd=project)
    tracked = run("git", "ls-files", cwd=project).stdout.split()
    assert "pyproject.toml" in tracked
    yamls = [name for name in tracked if name.endswith((".yml", ".yaml"))]
    for hook, files in [
        ("trailing-whitespace-fixer", tracked),
        ("end-of-file-fixer", tracked),
        ("check-yaml", yamls),
        ("check-toml", ["pyproject.toml"]),
    ]:
        result = run(BIN / hook, *files, cwd=project)
        assert result.returncode == 0, f"{hook}: {result.stdout}{result.stderr}"


def test_fastapi_dev_serves_the_app(baked: Path, tmp_path: Path) -> None:
    env = clean_env(DATABASE_URL=f"sqlite:///{tmp_path / baked.name / 'dev.db'}")
    project = migrated_copy(baked, tmp_path, env)
    command = f"exec {BIN / 'fastapi'} dev app/main.py --port $PORT"
    with serving(["sh", "-c", command], project, env) as client:
        assert client.get("/health").json() == {"status": "ok"}
    assert "fastapi dev" in (baked / "README.md").read_text()
