"""Keep the chosen database mode's files, drop the other mode's, and print the next steps.

The template holds each mode-specific file twice, under `_modes/async/` and `_modes/sync/`, at
the path it takes in the project; the files of the task queue (task_queue=celery) are under
`_options/celery/`. No network, no git, no secrets: cruft re-runs this hook.
"""

import json
import shutil
from pathlib import Path

ANSWERS = json.loads(r"""{{ cookiecutter | tojson }}""")

project = Path.cwd()


def keep(chosen: Path) -> None:
    """Move a chosen tree's files to their places in the project."""
    for source in sorted(chosen.rglob("*")):
        if source.is_file():
            target = project / source.relative_to(chosen)
            target.parent.mkdir(parents=True, exist_ok=True)
            source.replace(target)


keep(project / "_modes" / ANSWERS["database_access"])
if ANSWERS["task_queue"] == "celery":
    keep(project / "_options" / "celery")
shutil.rmtree(project / "_modes")
shutil.rmtree(project / "_options")

chosen = f"{ANSWERS['database_access']} database access, task queue: {ANSWERS['task_queue']}"
print(f"""
Generated {project.name} ({chosen}). Next:

    cd {project.name}
    ./scripts/run.sh     # install, migrate the embedded SQLite database, serve on :8000
    ./scripts/test.sh    # lint, type check and test
""")
