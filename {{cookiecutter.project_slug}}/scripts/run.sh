#!/usr/bin/env bash
# Install, apply migrations to DATABASE_URL (default: the embedded SQLite file ./app.db) and
# serve on http://127.0.0.1:8000 (HOST and PORT change that). Extra arguments go to uvicorn,
# e.g. ./scripts/run.sh --reload
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
.venv/bin/alembic upgrade head
# The server's limits, as the Dockerfile sets them (uvicorn reads UVICORN_* from the
# environment: set one to change it). h11 refuses a request whose headers pass 16 KiB unfinished
# (httptools has no cap); past 512 connections or requests in flight, requests get a fast 503;
# an idle keep-alive connection is closed after 5 s; on SIGTERM or Ctrl-C, requests in flight
# get 10 s to finish; no `server` header names the software. uvicorn has no timeout for reading
# a request: in production, a reverse proxy with read timeouts goes in front (see the README).
export UVICORN_HTTP="${UVICORN_HTTP:-h11}"
export UVICORN_H11_MAX_INCOMPLETE_EVENT_SIZE="${UVICORN_H11_MAX_INCOMPLETE_EVENT_SIZE:-16384}"
export UVICORN_LIMIT_CONCURRENCY="${UVICORN_LIMIT_CONCURRENCY:-512}"
export UVICORN_TIMEOUT_KEEP_ALIVE="${UVICORN_TIMEOUT_KEEP_ALIVE:-5}"
export UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN="${UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN:-10}"
export UVICORN_SERVER_HEADER="${UVICORN_SERVER_HEADER:-false}"
exec .venv/bin/uvicorn app.main:app --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}" "$@"
