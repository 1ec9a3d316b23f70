"""Check every answer before anything is written; on a bad one, say what to type instead."""

import json
import re
import sys
import unicodedata

# The answers arrive as JSON data, never as code: no answer can change this script.
ANSWERS = json.loads(r"""{{ cookiecutter | tojson }}""")

SUPPORTED_PYTHONS = ("3.11", "3.12", "3.13", "3.14")


def one_clean_line(value: str) -> bool:
    """No control or format characters (C0, DEL, C1 such as NEL, U+202E), no line breaks."""
    return not any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in value)


def slug_like(value: str) -> str:
    """A valid slug close to what was typed: "My_Service 2" -> "my-service-2"."""
    slug = re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-")
    return slug if re.match(r"[a-z]", slug) else "my-service"


CHECKS = {
    "project_name": (
        lambda v: bool(v.strip()) and one_clean_line(v),
        "a non-empty name on one line, without control or format characters",
        "My Service",
    ),
    "project_slug": (
        lambda v: re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", v) is not None,
        "lowercase letters and digits, words joined by single hyphens, starting with a letter",
        slug_like(ANSWERS["project_slug"]),
    ),
    "description": (
        one_clean_line,
        "a single line, without control or format characters",
        "A FastAPI service.",
    ),
    "author_email": (
        lambda v: re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", v) is not None,
        "an email address",
        "you@example.com",
    ),
    "database_access": (
        lambda v: v in ("async", "sync"),
        "async or sync",
        "async",
    ),
    "task_queue": (
        lambda v: v in ("none", "celery"),
        "none or celery",
        "none",
    ),
    "python_version": (
        lambda v: v in SUPPORTED_PYTHONS,
        "one of " + ", ".join(SUPPORTED_PYTHONS),
        "3.11",
    ),
}

errors = [
    f"  {name}={ANSWERS[name]!r} is not valid: use {rule}, e.g. {name}={example!r}"
    for name, (is_valid, rule, example) in CHECKS.items()
    if not is_valid(ANSWERS[name])
]
if errors:
    sys.exit("ERROR: nothing was generated. Fix these answers:\n" + "\n".join(errors))
