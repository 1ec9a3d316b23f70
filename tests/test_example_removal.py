"""The README's "Removing the example", run on each bake exactly as written, leaves a project
whose lint, type check and whole suite pass, on SQLite and PostgreSQL."""

import re
import shutil
import sys
from pathlib import Path

import pytest

from tests.helpers import DATABASES, passes_its_own_suite, run

MARK = "# the example"


def removal_commands(readme: str) -> str:
    """The one shell block of the README's section "Removing the example"."""
    section = readme.split("\n## Removing the example\n", 1)[1].split("\n## ", 1)[0]
    [block] = re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
    return block


@pytest.fixture(scope="module")
def removed(baked: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = tmp_path_factory.mktemp("removed") / baked.name
    shutil.copytree(baked, project)
    commands = removal_commands((project / "README.md").read_text())
    # -e: a file the commands name that the bake lacks fails the test (rm's error).
    result = run("bash", "-e", "-c", commands, cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    return project


def test_the_example_goes_and_the_scaffold_stays(baked: Path, removed: Path) -> None:
    before = {p.relative_to(baked) for p in baked.rglob("*.py")}
    after = {p.relative_to(removed) for p in removed.rglob("*.py")}
    gone = {str(p) for p in before - after}
    assert "app/api/routes/items.py" in gone
    assert "tests/example/test_items.py" in gone
    assert not any(path.startswith("migrations/versions/") for path in map(str, after))
    for kept in ["app/api/router.py", "app/models/__init__.py", "tests/probes.py"]:
        assert Path(kept) in after
    marked = [str(p) for p in after if MARK in (removed / p).read_text()]
    assert marked == []
    assert "items" not in (removed / "app/api/router.py").read_text()


@pytest.mark.parametrize(
    "command",
    [["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy", "."]],
    ids=["ruff-check", "ruff-format", "mypy-strict"],
)
def test_lint_and_type_check_pass(removed: Path, command: list[str]) -> None:
    result = run(sys.executable, "-m", *command, cwd=removed)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("database", DATABASES)
def test_the_whole_suite_passes(
    removed: Path, database: str, request: pytest.FixtureRequest
) -> None:
    passes_its_own_suite(removed, database, request)
