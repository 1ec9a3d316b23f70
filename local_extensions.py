"""Jinja filters of this template (cookiecutter loads them through `_extensions`)."""

import json
import re
from pathlib import PurePath

from cookiecutter.utils import simple_filter
from jinja2 import Environment
from jinja2.exceptions import UndefinedError
from jinja2.ext import Extension


@simple_filter
def quoted(value: str) -> str:
    """A double-quoted string that TOML and YAML read back as `value`.

    JSON's escapes (`\\"`, `\\\\`, `\\n`, `\\uXXXX`) are valid in both; every other character,
    apostrophes and accented letters included, is written as it is.
    """
    return json.dumps(value, ensure_ascii=False)


@simple_filter
def python_string(value: str) -> str:
    """A Python string literal for `value`, quoted as ruff's formatter would: double quotes,
    unless single quotes need fewer escapes."""
    escaped = json.dumps(value, ensure_ascii=False)[1:-1]
    if value.count('"') <= value.count("'"):
        return f'"{escaped}"'
    return "'" + escaped.replace('\\"', '"').replace("'", "\\'") + "'"


def plain_directory_name(value: str) -> str:
    """`value`, if it names one directory inside the output folder; else refuse, so that
    cookiecutter creates nothing. (It creates the project's directory before the
    pre-generation hook can check the answers, and deletes it when the hook refuses: with
    `project_slug=x/../..` that would be the folder above the output folder.)"""
    if value in ("", ".", "..") or PurePath(value).name != value:
        slug = re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-")
        example = slug if re.match(r"[a-z]", slug) else "my-service"
        raise UndefinedError(
            f"ERROR: nothing was generated. project_slug={value!r} is not valid: use lowercase "
            "letters and digits, words joined by single hyphens, starting with a letter, e.g. "
            f"project_slug={example!r}"
        )
    return value


class SafeProjectDirectory(Extension):
    """Checks the project's directory name as cookiecutter renders it, before it is created."""

    # The template's top folder, as cookiecutter reads it.
    DIRECTORY = "{{cookiecutter.project_slug}}"

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.filters["plain_directory_name"] = plain_directory_name

    def preprocess(self, source: str, name: str | None, filename: str | None = None) -> str:
        if source == self.DIRECTORY:
            return "{{ cookiecutter.project_slug | plain_directory_name }}"
        return source
