"""Keep the chosen database mode's files, drop the other mode's, and print the next steps.

The template holds each mode-specific file twice, under `_modes/async/` and `_modes/sync/`, at
the path it takes in the project. No network, no git, no secrets: cruft re-runs this hook.
"""

import json
import shutil
from pathlib import Path

ANSWERS = json.loads(r"""{{ cookiecutter | tojson }}""")

project = Path.cwd()
modes = project / "_modes"
chosen = modes / ANSWERS["database_access"]

for source in sorted(chosen.rglob("*")):
    if source.is_file():
        target = project / source.relative_to(chosen)
        target.parent.mkdir(parents=True, exist_ok=True)
        source.replace(target)
shutil.rmtree(modes)

print(f"""
Generated {project.name} ({ANSWERS["database_access"]} database access). Next:

    cd {project.name}
    ./scripts/run.sh     # install, migrate the embedded SQLite database, serve on :8000
    ./scripts/test.sh    # lint, type check and test
""")
