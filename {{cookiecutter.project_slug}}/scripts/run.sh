#!/usr/bin/env bash
# Install, apply migrations to DATABASE_URL (default: the embedded SQLite file ./app.db) and
# serve on http://127.0.0.1:8000 (HOST and PORT change that) as in production: see
# scripts/serve.sh for the server and its limits. Extra arguments go to granian.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
.venv/bin/alembic upgrade head
PATH="$PWD/.venv/bin:$PATH" exec ./scripts/serve.sh "$@"
