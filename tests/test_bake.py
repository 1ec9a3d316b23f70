"""Each bake is plain, clean code of its mode: no template left, no file of the other mode."""

import ast
import re
import shutil
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from tests.helpers import TEMPLATE, bake, mode_of, run, workflow_hardening_problems

TEMPLATE_SYNTAX = re.compile(r"\{\{|\{%|\}\}|%\}|cookiecutter\.")
# Words that belong to one mode only: a bake of the other mode must not contain them.
MODE_WORDS = {
    "async": ["asyncpg", "aiosqlite", "AsyncSession", "async_sessionmaker", "sqlalchemy[asyncio]"],
    "sync": ["psycopg2", "pysqlite", "orm import Session", "sessionmaker[Session]"],
}
MODE_FILES = TEMPLATE / "{{cookiecutter.project_slug}}" / "_modes"


# What running tools leave in a bake (other tests lint and run the shared bakes).
TOOL_OUTPUT = {".venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}


def project_files(project: Path) -> list[Path]:
    """The files the template wrote, whatever ran in the bake since."""
    return sorted(p for p in project.rglob("*") if p.is_file() and not TOOL_OUTPUT & set(p.parts))


def template_leftovers(project: Path) -> list[str]:
    return [
        f"{path.relative_to(project)}: {line.strip()}"
        for path in project_files(project)
        for line in path.read_text().splitlines()
        if TEMPLATE_SYNTAX.search(line) and "${{" not in line  # GitHub's own expressions
    ]


def test_no_template_syntax_is_left(baked: Path) -> None:
    assert template_leftovers(baked) == []


QUEUE_FILES = ["app/core/task_queue.py", "app/worker.py", "tests/test_task_queue.py"]


def test_the_task_queue_comes_only_when_chosen(baked: Path, baked_with_queue: Path) -> None:
    """task_queue=none (the default): no Celery dependency, module, compose service or setting;
    task_queue=celery: all of them, and compose runs the queue."""
    for relative in QUEUE_FILES:
        assert not (baked / relative).exists(), relative
        assert (baked_with_queue / relative).is_file(), relative
    assert not (baked / "_options").exists()
    assert not (baked_with_queue / "_options").exists()
    assert template_leftovers(baked_with_queue) == []
    words = re.compile(r"celery|redis|cpu_backend|broker", re.IGNORECASE)
    for relative in ["pyproject.toml", "compose.yaml", ".env.example", "app/core/config.py"]:
        assert not words.search((baked / relative).read_text()), relative
        assert words.search((baked_with_queue / relative).read_text()), relative
    services = yaml.safe_load((baked_with_queue / "compose.yaml").read_text())["services"]
    assert {"redis", "worker"} <= set(services)
    assert services["app"]["environment"]["CPU_BACKEND"] == "celery"
    assert set(yaml.safe_load((baked / "compose.yaml").read_text())["services"]) == {
        "db",
        "migrate",
        "app",
    }


def test_no_file_or_word_of_the_other_mode(baked: Path) -> None:
    mode = mode_of(baked)
    other = "sync" if mode == "async" else "async"
    assert not (baked / "_modes").exists()
    for template_file in (MODE_FILES / mode).rglob("*.py"):
        relative = template_file.relative_to(MODE_FILES / mode)
        assert (baked / relative).read_text() == template_file.read_text(), relative
    # Only the code that runs: the loop guard and the docs name every driver on purpose
    # (psycopg2 inside `async def` is a mistake the guard exists to catch).
    code = [baked / "pyproject.toml", baked / "tests" / "conftest.py"]
    code += [*(baked / "app").rglob("*.py"), *(baked / "migrations").rglob("*.py")]
    found = [
        (str(path.relative_to(baked)), word)
        for path in code
        for word in MODE_WORDS[other]
        if word in path.read_text()
    ]
    assert found == []


def machinery_reaching_out(app: Path) -> list[str]:
    """The imports of the machinery (`app/core/`) from the service's own code or its settings:
    the machinery takes plain values, and only `config.py` declares settings."""
    found = []
    for module in sorted((app / "core").rglob("*.py")):
        if module.name == "config.py":
            continue
        for line in module.read_text().splitlines():
            if re.match(r"\s*(from|import) app\.(?!core\b)|\s*from app\.core\.config import", line):
                found.append(f"{module.relative_to(app.parent)}: {line.strip()}")
    return found


def test_the_machinery_takes_plain_values_and_never_the_services_code(baked: Path) -> None:
    assert machinery_reaching_out(baked / "app") == []


def test_a_machinery_module_that_reads_the_settings_is_caught(baked: Path, tmp_path: Path) -> None:
    app = tmp_path / "app"
    shutil.copytree(baked / "app", app)
    http = app / "core/http.py"
    http.write_text("from app.settings import Settings\n" + http.read_text())
    assert machinery_reaching_out(app) == ["app/core/http.py: from app.settings import Settings"]


def test_no_empty_files(baked: Path) -> None:
    empty = [p for p in project_files(baked) if p.stat().st_size == 0 and p.name != "__init__.py"]
    assert empty == []


def handlers(source: str) -> dict[str, bool]:
    """Each route handler of a module (a function under a `@router....` decorator), and whether
    it is `async def`."""
    found = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and any(
            ast.unparse(decorator).startswith("router.") for decorator in node.decorator_list
        ):
            found[node.name] = isinstance(node, ast.AsyncFunctionDef)
    return found


def test_async_handlers_only_in_async_mode(baked: Path) -> None:
    routes = "".join(p.read_text() for p in (baked / "app" / "api" / "routes").glob("*.py"))
    deps = (baked / "app" / "api" / "deps.py").read_text()
    found = handlers(routes)
    assert len(found) >= 10
    if mode_of(baked) == "async":
        assert all(found.values()), found
        assert re.search(r"^def ", deps, re.MULTILINE) is None
    else:
        # Only liveness (GET and HEAD), which touches nothing that blocks: it must never wait
        # for a thread; and /metrics, the same route in both modes, which awaits its thread.
        assert sorted(name for name, is_async in found.items() if is_async) == [
            "live",
            "live_head",
            "metrics",
        ]
        assert "async def" not in deps


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["mypy", "."],
    ],
    ids=["ruff-check", "ruff-format", "mypy-strict"],
)
def test_lint_and_type_check_pass(baked: Path, command: list[str]) -> None:
    result = run(sys.executable, "-m", *command, cwd=baked)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "command",
    [["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy", "."]],
    ids=["ruff-check", "ruff-format", "mypy-strict"],
)
def test_lint_and_type_check_pass_with_the_task_queue(
    baked_with_queue: Path, command: list[str]
) -> None:
    result = run(sys.executable, "-m", *command, cwd=baked_with_queue)
    assert result.returncode == 0, result.stdout + result.stderr


def test_pyproject_declares_the_modes_drivers(baked: Path) -> None:
    project = tomllib.loads((baked / "pyproject.toml").read_text())["project"]
    assert project["name"] == "my-service"
    assert project["requires-python"] == ">=3.11"
    dependencies = " ".join(project["dependencies"])
    if mode_of(baked) == "async":
        assert "asyncpg" in dependencies
        assert "aiosqlite" in dependencies
    else:
        assert "psycopg2-binary" in dependencies


# Releases with known advisories, which the bake's floors exclude (see its pyproject.toml).
ADVISORIES = {"starlette": "0.49.0", "h11": "0.15.0"}


def test_dependency_floors_exclude_releases_with_known_advisories(baked: Path) -> None:
    project = tomllib.loads((baked / "pyproject.toml").read_text())["project"]
    requirements = {
        (requirement := Requirement(line)).name: requirement.specifier
        for line in project["dependencies"]
    }
    for name, vulnerable in ADVISORIES.items():
        assert name in requirements, f"no floor for {name}"
        assert not requirements[name].contains(vulnerable), f"{name} {vulnerable} allowed"


def test_workflow_is_a_valid_github_workflow(baked: Path) -> None:
    workflow = baked / ".github" / "workflows" / "ci.yml"
    parsed = yaml.safe_load(workflow.read_text())
    job = parsed["jobs"]["test"]
    assert job["strategy"]["matrix"]["python-version"] == ["3.11", "3.12", "3.13", "3.14"]
    assert "postgres" in job["services"]
    assert workflow_hardening_problems(workflow) == []
    assert "pip-audit" in parsed["jobs"]["audit"]["steps"][-1]["run"]
    schema = "vendor.github-workflows"
    result = run(sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, workflow)
    assert result.returncode == 0, result.stdout + result.stderr


def test_answers_reach_the_project(tmp_path: Path) -> None:
    project = bake(
        tmp_path,
        project_name="Billing API",
        description='Bills "and" \\ receipts',
        author_name="Ada",
        author_email="ada@example.org",
        python_version="3.13",
    )
    assert project.name == "billing-api"
    metadata = tomllib.loads((project / "pyproject.toml").read_text())
    assert metadata["project"]["name"] == "billing-api"
    assert metadata["project"]["description"] == 'Bills "and" \\ receipts'
    assert metadata["project"]["authors"] == [{"name": "Ada", "email": "ada@example.org"}]
    assert metadata["project"]["requires-python"] == ">=3.13"
    assert metadata["tool"]["ruff"]["target-version"] == "py313"
    assert 'project_name: str = "Billing API"' in (project / "app/core/config.py").read_text()
    workflow = yaml.safe_load((project / ".github/workflows/ci.yml").read_text())
    assert workflow["jobs"]["test"]["strategy"]["matrix"]["python-version"] == ["3.13", "3.14"]
