"""Bad answers stop before anything is written, saying what to type instead."""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.helpers import TEMPLATE, bake, bake_cli, clean_env, run, write_config


@pytest.mark.parametrize(
    ("answer", "shown", "suggested"),
    [
        ("project_slug=My Service", "'My Service'", "project_slug='my-service'"),
        ("project_slug=billing_api", "'billing_api'", "project_slug='billing-api'"),
        ("project_slug=1service", "'1service'", "project_slug='my-service'"),
        ("project_slug=my--service", "'my--service'", "project_slug='my-service'"),
        ("python_version=3.9", "'3.9'", "python_version='3.11'"),
        ("python_version=3.11.4", "'3.11.4'", "python_version='3.11'"),
        ("author_email=nobody", "'nobody'", "author_email='you@example.com'"),
        ("project_name=Two\nlines", "'Two\\nlines'", "project_name='My Service'"),
        ("project_name= ", "' '", "project_name='My Service'"),
        ("project_name=evil\u202etxt.exe", "'evil\\u202etxt.exe'", "project_name='My Service'"),
        ("project_name=del\x7f", "'del\\x7f'", "project_name='My Service'"),
        ("description=one\x85two", "'one\\x85two'", "description='A FastAPI service.'"),
        ("description=one\u2028two", "'one\\u2028two'", "description='A FastAPI service.'"),
        ("project_slug=/tmp/escape", "'/tmp/escape'", "project_slug='tmp-escape'"),
    ],
    ids=lambda value: value if "=" in value else "",
)
def test_a_bad_answer_fails_with_its_fix_and_writes_nothing(
    tmp_path: Path, answer: str, shown: str, suggested: str
) -> None:
    extra = [answer] if answer.startswith("project_slug") else [answer, "project_slug=svc"]
    result = bake_cli(tmp_path, *extra)

    # A slug that is no plain directory name is refused before cookiecutter makes a directory,
    # through its own error (printed on stdout); the rest by the pre-generation hook (stderr).
    said = result.stdout + result.stderr
    assert result.returncode != 0
    assert "nothing was generated" in said
    assert shown in said
    assert suggested in said
    assert list(tmp_path.iterdir()) == []


def test_an_absolute_slug_leaves_nothing_outside_the_output_directory(tmp_path: Path) -> None:
    output, outside = tmp_path / "output", tmp_path / "outside"
    output.mkdir()
    result = bake_cli(output, f"project_slug={outside}")
    assert result.returncode != 0
    assert f"project_slug='{outside}' is not valid" in result.stdout + result.stderr
    assert not outside.exists()
    assert list(output.iterdir()) == []


ESCAPING_SLUG = "x/../.."  # the folder above the output folder


def escaping_bakes(sandbox: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """The reproductions of a slug that names a folder outside the output folder: the command
    line, a config file and the interactive prompt, each with an output folder not made yet."""
    command = [sys.executable, "-m", "cookiecutter"]
    config = write_config()
    with_default = config.with_name("escaping.yaml")
    with_default.write_text(
        config.read_text() + f"default_context:\n  project_slug: '{ESCAPING_SLUG}'\n"
    )
    env = {**os.environ, "COOKIECUTTER_CONFIG": str(config)}
    return {
        "command line": run(
            *command, "--no-input", "-o", sandbox / "out" / "a", TEMPLATE,
            f"project_slug={ESCAPING_SLUG}", env=env,
        ),
        "dot-dot": run(
            *command, "--no-input", "-o", sandbox / "new", TEMPLATE, "project_slug=..", env=env
        ),
        "config file": run(
            *command, "--no-input", "--config-file", with_default, "-o", sandbox / "out" / "b",
            TEMPLATE, env=env,
        ),
        "prompt": subprocess.run(
            [*command, "-o", str(sandbox / "out" / "c"), str(TEMPLATE)],
            input=f"\n{ESCAPING_SLUG}\n" + "\n" * 8, capture_output=True, text=True, env=env,
            check=False, timeout=60,
        ),
    }  # fmt: skip


def test_a_slug_that_escapes_the_output_folder_deletes_nothing(tmp_path: Path) -> None:
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    (sandbox / "keep.txt").write_text("precious")
    for way, result in escaping_bakes(sandbox).items():
        assert result.returncode != 0, way
        assert "is not valid" in result.stdout + result.stderr, (way, result.stdout[-2000:])
        assert (sandbox / "keep.txt").read_text() == "precious", way
    assert sorted(path.name for path in tmp_path.iterdir()) == ["sandbox"]
    assert not any((sandbox / "out").rglob("pyproject.toml"))


def test_every_bad_answer_is_reported_at_once(tmp_path: Path) -> None:
    result = bake_cli(tmp_path, "project_slug=Bad Slug", "python_version=2.7")
    assert result.returncode != 0
    assert "project_slug='Bad Slug'" in result.stderr
    assert "python_version='2.7'" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_database_access_lists_the_choices(tmp_path: Path) -> None:
    # cookiecutter itself checks choice answers, before any hook runs.
    result = bake_cli(tmp_path, "database_access=both")
    assert result.returncode != 0
    assert "the choices are ['async', 'sync']" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_task_queue_lists_the_choices(tmp_path: Path) -> None:
    result = bake_cli(tmp_path, "task_queue=rq")
    assert result.returncode != 0
    assert "the choices are ['none', 'celery']" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_answers_are_data_not_code(tmp_path: Path) -> None:
    """A hostile answer is not executed by the hooks: it ends up, as text, in the project."""
    hostile = "x'''); __import__('pathlib').Path('PWNED').touch() #"
    project = bake(tmp_path, project_name=hostile, project_slug="svc")

    assert not list(tmp_path.rglob("PWNED"))
    assert not Path("PWNED").exists()
    assert hostile in (project / "README.md").read_text()


def test_the_default_slug_is_derived_from_any_name(tmp_path: Path) -> None:
    result = bake_cli(tmp_path, "project_name=Bob's Billing_API 2")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "bob-s-billing-api-2").is_dir()


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_the_cli_bakes_each_mode_and_prints_the_next_steps(tmp_path: Path, mode: str) -> None:
    result = bake_cli(tmp_path, f"database_access={mode}")
    assert result.returncode == 0, result.stderr
    assert "./scripts/run.sh" in result.stdout
    assert (tmp_path / "my-service" / "app" / "main.py").exists()


@pytest.mark.parametrize(
    ("name", "description"),
    [
        ('Café "Ops" Service', "Serves \"ops\", \\ and 'more'"),
        ("Bob's \\ API", "Bob's"),
        ("Ünïcödé 'quotes' \"both\"", "plain"),
    ],
)
def test_any_project_name_is_kept_verbatim(tmp_path: Path, name: str, description: str) -> None:
    project = bake(tmp_path, project_name=name, project_slug="svc", description=description)

    assert (project / "README.md").read_text().splitlines()[0] == f"# {name}"
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["description"] == description
    shown = run(
        sys.executable,
        "-c",
        "from app.factory import create_app; print(create_app().openapi()['info']['title'])",
        cwd=project,
        env=clean_env(),
    )
    assert shown.stdout == f"{name}\n", shown.stderr
    lint = run(sys.executable, "-m", "ruff", "format", "--check", "app/core/config.py", cwd=project)
    assert lint.returncode == 0, lint.stdout
