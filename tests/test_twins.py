"""The two modes are hand-written twins; these checks keep them in step.

Each mode-specific file exists twice, under `_modes/async/` and `_modes/sync/`. Both modes must
provide the same files, use every setting, and, where a pair is mechanical (routes,
dependencies, repositories), differ only by the async-to-sync rewrite: the async file, with
`async`/`await` and the async class names rewritten, must equal the sync file, imports,
docstrings and comments aside (as httpcore checks its generated sync code).
"""

import ast
import re
from pathlib import Path

import pytest

from tests.helpers import TEMPLATE, mode_of

PROJECT = TEMPLATE / "{{cookiecutter.project_slug}}"
MODES = PROJECT / "_modes"
ASYNC_ONLY = {"app/core/disconnect.py", "tests/test_disconnect.py"}  # sync handlers run to the end
MECHANICAL = [
    "app/api/deps.py",
    "app/api/routes/items.py",
    "app/repositories/items.py",
    "app/repositories/tags.py",
    "migrations/env.py",
    "tests/probes.py",
    "tests/test_conflicts.py",
    "tests/test_http_client.py",
    "tests/test_migrations.py",
]
UNASYNC = [
    (r"\basync def\b", "def"),
    (r"\basync with\b", "with"),
    (r"\basync for\b", "for"),
    (r"\bawait ", ""),
    (r"\bAsyncSession\b", "Session"),
    (r"\bAsyncConnection\b", "Connection"),
    (r"\bAsyncEngine\b", "Engine"),
    (r"\bAsyncIterator\b", "Iterator"),
    (r"\bAsyncGenerator\b", "Generator"),
    (r"\bhttpx\.AsyncClient\b", "httpx.Client"),
    (r"\bconnection\.stream\(", "connection.execute("),  # a server-side cursor, in each mode
    (r"\b(\w+)\.run_sync\(([\w.]+)\)", r"\2(\1)"),  # sync code on an async connection
    (r"\basyncio\.run\((\w+)\(\)\)", r"\1()"),  # a script's entry point
    (r"\bpool\.run\(", "pool.call("),  # a CPU job, awaited or waited for in a thread
]


def files(mode: str) -> set[str]:
    root = MODES / mode
    return {str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()}


def test_both_modes_provide_the_same_files() -> None:
    assert files("async") - files("sync") == ASYNC_ONLY
    assert files("sync") - files("async") == set()


def unasync(source: str) -> str:
    for pattern, replacement in UNASYNC:
        source = re.sub(pattern, replacement, source)
    return source


def code_of(source: str) -> str:
    """The module's code: no imports, docstrings or comments (those may speak of their mode)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list):
            node.body = [  # type: ignore[attr-defined]
                child
                for child in body
                if not isinstance(child, ast.Import | ast.ImportFrom)
                and not (isinstance(child, ast.Expr) and isinstance(child.value, ast.Constant))
            ] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False)


@pytest.mark.parametrize("relative", MECHANICAL)
def test_mechanical_pairs_differ_only_by_the_rewrite(relative: str) -> None:
    async_code = code_of(unasync((MODES / "async" / relative).read_text()))
    sync_code = code_of((MODES / "sync" / relative).read_text())
    assert async_code == sync_code, f"{relative}: the modes drifted apart"


def test_the_rewrite_check_can_fail() -> None:
    sync_items = (MODES / "sync" / "app/repositories/items.py").read_text()
    drifted = sync_items.replace("order_by(Item.id)", "order_by(Item.title)")
    assert drifted != sync_items
    assert code_of(drifted) != code_of(sync_items)


def test_every_setting_is_used_in_each_bake(baked: Path) -> None:
    config = (baked / "app/core/config.py").read_text()
    settings_class = config.split("class CoreSettings(")[1]
    fields = re.findall(r"^    (\w+): .+=", settings_class, flags=re.MULTILINE)
    assert "db_ping_timeout" in fields
    # Read anywhere but where it is declared (a sizing setting may be read by config.py only).
    declarations = re.compile(r"^    \w+: .+=.*$", flags=re.MULTILINE)
    code = "\n".join(
        declarations.sub("", path.read_text())
        for folder in ("app", "migrations")
        for path in (baked / folder).rglob("*.py")
    )
    unused = [field for field in fields if not re.search(rf"""\.{field}\b|\["{field}"\]""", code)]
    assert unused == [], f"{mode_of(baked)} bake never reads {unused}"


def test_the_loop_guard_is_one_file_that_names_nothing_of_a_project() -> None:
    """The same bytes in every bake (no template syntax, no twin), whose advice names the
    project's helpers only through the bake's `loop_guard_advice` ini option."""
    guard = (PROJECT / "tests/loop_guard.py").read_text()
    assert not any((MODES / mode / "tests/loop_guard.py").exists() for mode in ("async", "sync"))
    assert "{{" not in guard
    assert "{%" not in guard
    for name in ("app.core", "run_in_thread", "HttpClientDep", "CpuDep", "stalls.py"):
        assert name not in guard, name
    assert "`cruft update` updates it" in guard
    assert "loop_guard_advice = [" in (PROJECT / "pyproject.toml").read_text()
