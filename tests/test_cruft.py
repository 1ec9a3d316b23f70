"""A bake follows the template with cruft: created from a git copy, then updated in place.

The template is copied to a git repository of its own, a project is created from it with
`cruft create`, the template gets a commit, and `cruft update` brings that change into the
project, as the baked README says. The hooks are deterministic, so nothing else changes.
"""

import json
import shutil
import sys
from pathlib import Path

from tests.helpers import TEMPLATE, clean_env, run

IGNORED = shutil.ignore_patterns(".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache")


def git(*args: str, cwd: Path) -> str:
    result = run("git", "-c", "user.name=T", "-c", "user.email=t@example.com", *args, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def cruft(*args: str, cwd: Path) -> tuple[int, str]:
    result = run(sys.executable, "-m", "cruft", *args, cwd=cwd, env=clean_env())
    return result.returncode, result.stdout + result.stderr


def test_cruft_update_brings_a_template_change_into_a_bake(tmp_path: Path) -> None:
    template = tmp_path / "template"
    shutil.copytree(TEMPLATE, template, ignore=IGNORED)
    git("init", "-q", "-b", "main", cwd=template)
    git("add", "-A", cwd=template)
    git("commit", "-q", "-m", "template v1", cwd=template)

    code, output = cruft(
        "create", str(template), "--no-input", "--extra-context", '{"project_slug": "svc"}',
        cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, output
    project = tmp_path / "svc"
    assert json.loads((project / ".cruft.json").read_text())["template"] == str(template)
    git("init", "-q", "-b", "main", cwd=project)
    git("add", "-A", cwd=project)
    git("commit", "-q", "-m", "baked", cwd=project)
    assert cruft("check", cwd=project)[0] == 0, "a fresh bake is up to date"

    readme = template / "{{cookiecutter.project_slug}}" / "README.md"
    readme.write_text(readme.read_text() + "\nA line the template added later.\n")
    git("commit", "-q", "-am", "template v2", cwd=template)
    assert cruft("check", cwd=project)[0] != 0, "the bake is behind the template now"

    code, output = cruft("update", "--skip-apply-ask", "--allow-untracked-files", cwd=project)
    assert code == 0, output
    assert (project / "README.md").read_text().endswith("\nA line the template added later.\n")
    changed = git("status", "--porcelain", cwd=project).split()
    assert sorted(changed) == sorted(["M", ".cruft.json", "M", "README.md"]), changed
    assert cruft("check", cwd=project)[0] == 0


def test_cruft_update_leaves_the_files_the_project_owns(tmp_path: Path) -> None:
    """A template change to a file the project owns (settings, 409 details) does not reach it, so
    it never conflicts with the project's edits there; a change elsewhere still lands."""
    template = tmp_path / "template"
    shutil.copytree(TEMPLATE, template, ignore=IGNORED)
    git("init", "-q", "-b", "main", cwd=template)
    git("add", "-A", cwd=template)
    git("commit", "-q", "-m", "template v1", cwd=template)
    context = '{"project_slug": "svc"}'
    code, output = cruft(
        "create", str(template), "--no-input", "--extra-context", context, cwd=tmp_path
    )
    assert code == 0, output
    project = tmp_path / "svc"
    git("init", "-q", "-b", "main", cwd=project)
    git("add", "-A", cwd=project)
    git("commit", "-q", "-m", "baked", cwd=project)

    owned = {
        "app/settings.py": ('"""Every setting', '    payments_url: str = "https://pay.internal"\n'),
        "app/api/conflicts.py": (
            '    "uq_tags_item_id"',
            '    "uq_users_email": "That e-mail is taken",\n',
        ),
    }
    for path, (anchor, line) in owned.items():
        mine = project / path
        text = mine.read_text()
        at = text.index("\n", text.index(anchor)) + 1
        mine.write_text(text[:at] + line + text[at:])
    git("commit", "-q", "-am", "the project's own settings and conflict details", cwd=project)
    edited = {path: (project / path).read_text() for path in owned}

    baked = template / "{{cookiecutter.project_slug}}"
    for path, (anchor, _) in owned.items():  # the template changes the lines next to the edits
        theirs = baked / path
        text = theirs.read_text()
        at = text.index("\n", text.index(anchor)) + 1
        theirs.write_text(text[:at] + "    # a line the template added later\n" + text[at:])
    errors = baked / "app/api/errors.py"
    errors.write_text(errors.read_text() + "\n# A line the template added later.\n")
    git("commit", "-q", "-am", "template v2", cwd=template)

    code, output = cruft("update", "--skip-apply-ask", "--allow-untracked-files", cwd=project)
    assert code == 0, output
    for path, text in edited.items():
        assert (project / path).read_text() == text, f"{path} was changed by the update"
    assert (project / "app/api/errors.py").read_text().endswith("added later.\n")
    assert git("diff", "--check", cwd=project) == ""  # no conflict markers anywhere
    assert not list(project.rglob("*.rej"))
