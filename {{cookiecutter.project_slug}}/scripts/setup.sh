#!/usr/bin/env bash
# Create .venv with the project and its dev tools; run again whenever pyproject.toml changes.
# PYTHON picks the interpreter (default: python3).
set -euo pipefail
cd "$(dirname "$0")/.."

stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    "${PYTHON:-python3}" -m venv .venv
    # Dependency groups (PEP 735) need pip 25.1 or newer.
    .venv/bin/python -m pip install --quiet --upgrade "pip>=25.1"
    .venv/bin/python -m pip install --quiet --editable . --group dev
    touch "$stamp"
fi
