"""The template repository's own files."""

import json
import sys

import yaml

from tests.helpers import TEMPLATE, run, workflow_hardening_problems


def test_cookiecutter_json_defaults_come_first() -> None:
    context = json.loads((TEMPLATE / "cookiecutter.json").read_text())
    assert context["database_access"] == ["async", "sync"]
    prompts = context["__prompts__"]
    assert set(prompts) == {k for k in context if not k.startswith("_")}


def test_template_workflow_is_valid_lean_and_pinned() -> None:
    workflow = TEMPLATE / ".github" / "workflows" / "template.yml"
    parsed = yaml.safe_load(workflow.read_text())
    matrix = parsed["jobs"]["bake-and-test"]["strategy"]["matrix"]
    assert set(matrix) == {"database_access", "python-version"}, "each distinct job once"
    assert matrix["database_access"] == ["async", "sync"]
    assert parsed["permissions"] == {}
    assert parsed["concurrency"]["cancel-in-progress"] is True
    assert workflow.read_text().count("uses:") == 3
    assert workflow_hardening_problems(workflow) == []
    schema = "vendor.github-workflows"
    result = run(sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, workflow)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_the_readmes_test_command() -> None:
    readme = (TEMPLATE / "README.md").read_text()
    ci = (TEMPLATE / ".ci" / "run").read_text()
    assert "uv run pytest" in readme
    assert ci.rstrip().endswith("uv run pytest")
