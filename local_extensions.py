"""Jinja filters of this template (cookiecutter loads them through `_extensions`)."""

import json

from cookiecutter.utils import simple_filter


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
