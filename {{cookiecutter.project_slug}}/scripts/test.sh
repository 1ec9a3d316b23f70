#!/usr/bin/env bash
# Lint, type check and test. The tests use TEST_DATABASE_URL when it is set (e.g. a PostgreSQL
# database they may empty), else a throwaway SQLite file. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy .
.venv/bin/pytest "$@"
