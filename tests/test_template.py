"""The template repository's own files."""

import json
import sys

import yaml

from tests.helpers import TEMPLATE, run


def test_cookiecutter_json_defaults_come_first() -> None:
    context = json.loads((TEMPLATE / "cookiecutter.json").read_text())
    assert context["database_access"] == ["async", "sync"]
    prompts = context["__prompts__"]
    assert set(prompts) == {k for k in context if not k.startswith("_")}


def test_template_workflow_is_valid_and_covers_the_matrix() -> None:
    workflow = TEMPLATE / ".github" / "workflows" / "template.yml"
    matrix = yaml.safe_load(workflow.read_text())["jobs"]["bake-and-test"]["strategy"]["matrix"]
    assert matrix["database_access"] == ["async", "sync"]
    assert matrix["database"] == ["sqlite", "postgresql"]
    schema = "vendor.github-workflows"
    result = run(sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, workflow)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_the_readmes_test_command() -> None:
    readme = (TEMPLATE / "README.md").read_text()
    ci = (TEMPLATE / ".ci" / "run").read_text()
    assert "uv run pytest" in readme
    assert ci.rstrip().endswith("uv run pytest")
