#!/usr/bin/env bash
# Install, apply migrations to DATABASE_URL (default: the embedded SQLite file ./app.db) and
# serve on http://127.0.0.1:8000 (HOST and PORT change that). Extra arguments go to uvicorn,
# e.g. ./scripts/run.sh --reload
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
.venv/bin/alembic upgrade head
# On SIGTERM or Ctrl-C, requests in flight get 10 s to finish before they are cancelled.
exec .venv/bin/uvicorn app.main:app --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}" \
    --timeout-graceful-shutdown 10 "$@"
