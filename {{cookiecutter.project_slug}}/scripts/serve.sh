#!/usr/bin/env bash
# Serve the app as in production, on HOST:PORT (default 127.0.0.1:8000), with granian: the
# image's command, and what ./scripts/run.sh runs after it installs and migrates. Extra
# arguments go to granian, e.g. --reload (needs `pip install granian[reload]`).
#
# The server's limits, read by granian from the environment (set one to change it):
# - a request head must arrive within 5 s and fit in 16 KiB (else 408 or 431, however it is
#   sent); a keep-alive connection idle for 5 s is closed;
# - up to 2,048 open connections a worker: idle and slow ones wait in granian, outside Python,
#   and cost the app nothing (past it, new connections wait in the listen backlog);
# - on SIGTERM or Ctrl-C, requests in flight finish first (each is bounded: the body deadline,
#   CPU_JOB_TIMEOUT, the database's statement timeout), then the lifespan closes the pools. A
#   worker still running 60 s after the signal is killed: granian 2.8 can wedge a worker that
#   gets two stop signals at once, as Ctrl-C and a systemd stop send (one to every process,
#   then granian's own). Where a platform stops the container, its own timeout comes first;
# - one worker process per WEB_CONCURRENCY, on uvloop, with the app's own access log.
# A request body must arrive within REQUEST_BODY_TIMEOUT seconds: the app enforces that.
set -euo pipefail
# Room for that many connections: the soft limit of open files raised to the hard one.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

export GRANIAN_INTERFACE=asgi
export GRANIAN_HOST="${HOST:-127.0.0.1}"
export GRANIAN_PORT="${PORT:-8000}"
export GRANIAN_WORKERS="${WEB_CONCURRENCY:-1}"
export GRANIAN_LOOP="${GRANIAN_LOOP:-uvloop}"
export GRANIAN_HTTP="${GRANIAN_HTTP:-1}"
export GRANIAN_WEBSOCKETS="${GRANIAN_WEBSOCKETS:-false}"
export GRANIAN_HTTP1_HEADER_READ_TIMEOUT="${GRANIAN_HTTP1_HEADER_READ_TIMEOUT:-5000}"
export GRANIAN_HTTP1_BUFFER_SIZE="${GRANIAN_HTTP1_BUFFER_SIZE:-16384}"
export GRANIAN_BACKPRESSURE="${GRANIAN_BACKPRESSURE:-2048}"
export GRANIAN_RESPAWN_FAILED_WORKERS="${GRANIAN_RESPAWN_FAILED_WORKERS:-true}"
export GRANIAN_WORKERS_KILL_TIMEOUT="${GRANIAN_WORKERS_KILL_TIMEOUT:-60}"
if [ "${LOG_FORMAT:-text}" = json ]; then
    # granian's own lines (start, stop, workers) in the app's JSON format too.
    export GRANIAN_LOG_CONFIG="${GRANIAN_LOG_CONFIG:-$(dirname "$0")/granian-json-log.json}"
fi
exec granian app.main:app "$@"
