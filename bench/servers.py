"""Which server for production: each bake on each candidate, interleaved over rounds.

    uv run python bench/servers.py [--rounds 3] [--duration 10] [--idle 600]

Bakes both modes, starts a throwaway PostgreSQL on loopback with 10,000 items, and serves each
bake with one worker of each candidate: uvicorn with httptools, uvicorn with h11 (the limits
the bakes shipped with before: LIMIT_CONCURRENCY 512, a 16 KiB head cap), and granian as
`scripts/serve.sh` runs it (the production command itself). Every server runs the app's own
access log, as in production. Each round measures every (bake, server) pair once, in an order
rotated from round to round, so that no candidate is always first or last on a machine whose
speed drifts. For each pair: `GET /api/v1/items/{random id}` with wrk at 64 connections
(requests a second, p99, server CPU per request, all the server's processes counted), then
/health latency with `--idle` sockets open that send nothing. Medians over the rounds, and
the spread (lowest to highest), are printed, with ratios to granian.
"""

import argparse
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.run import (  # noqa: E402
    bake,
    get,
    prepare_database,
    required_tools,
    rotated,
    tree_cpu_seconds,
    wait_until_up,
    wrk,
)
from tests.postgres import free_port, throwaway_postgres  # noqa: E402

BIN = Path(sys.executable).parent
UVICORN = [sys.executable, "-m", "uvicorn", "app.main:app", "--loop", "uvloop", "--no-access-log"]
# What scripts/run.sh set for uvicorn before granian: the limits the idle-socket figure tests.
UVICORN_LIMITS = {
    "UVICORN_LIMIT_CONCURRENCY": "512",
    "UVICORN_TIMEOUT_KEEP_ALIVE": "5",
    "UVICORN_H11_MAX_INCOMPLETE_EVENT_SIZE": "16384",
}
SERVERS = {
    "uvicorn-httptools": ([*UVICORN, "--http", "httptools", "--port", "$PORT"], UVICORN_LIMITS),
    "uvicorn-h11": ([*UVICORN, "--http", "h11", "--port", "$PORT"], UVICORN_LIMITS),
    "granian": (["./scripts/serve.sh"], {"PATH": f"{BIN}:{os.environ['PATH']}"}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk per pair")
    parser.add_argument("--idle", type=int, default=600, help="idle sockets for /health")
    args = parser.parse_args()
    bindir = required_tools()
    work = Path(tempfile.mkdtemp(prefix="bench-servers-"))
    try:
        bakes = {mode: bake(work, mode) for mode in ("async", "sync")}
        with throwaway_postgres(bindir, "max_connections=300") as server:
            url = prepare_database(server.url, bakes["async"])
            pairs = [(mode, name) for mode in bakes for name in SERVERS]
            figures: dict[tuple[str, str], list[dict[str, float]]] = {pair: [] for pair in pairs}
            for round_ in range(args.rounds):
                for mode, name in rotated(pairs, round_, args.rounds):
                    print(f"-- round {round_ + 1}: {mode} bake on {name}", file=sys.stderr)
                    measured = measure(bakes[mode], name, url, args.duration, args.idle)
                    print(f"   {measured}", file=sys.stderr, flush=True)
                    figures[(mode, name)].append(measured)
            print_table(figures, args.rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(project: Path, name: str, url: str, duration: int, idle: int) -> dict[str, float]:
    command, extra_env = SERVERS[name]
    port = free_port()
    env = {**os.environ, **extra_env, "DATABASE_URL": url, "PORT": str(port)}
    shell = ["sh", "-c", "exec " + " ".join(command)]
    with tempfile.TemporaryFile(mode="w+") as log:
        server = subprocess.Popen(
            shell, cwd=project, env=env, stdout=log, stderr=log, start_new_session=True
        )
        try:
            wait_until_up(port, server)
            wrk(port, 64, 3)  # warm up: connections, caches, prepared statements
            cpu_before = tree_cpu_seconds(server.pid)
            run = wrk(port, 64, duration)
            cpu = tree_cpu_seconds(server.pid) - cpu_before
            result = {
                "rps": run["requests"] / run["seconds"],
                "p99_ms": run["p99"] / 1000,
                "errors": run["errors"],
                "cpu_us": cpu / max(run["requests"], 1) * 1e6,
            }
            result.update(health_with_idle_sockets(port, idle))
            return result
        finally:
            os.killpg(server.pid, signal.SIGINT)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()


def health_with_idle_sockets(port: int, count: int) -> dict[str, float]:
    """/health, each on a new connection, while `count` sockets are open and send nothing."""
    idle = []
    try:
        for _ in range(count):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        time.sleep(0.5)
        latencies, refused = [], 0
        for _ in range(20):
            started = time.monotonic()
            try:
                status, _ = get(port, "/health", timeout=10)
            except OSError:
                status = 0
            latencies.append((time.monotonic() - started) * 1000)
            refused += status != 200
        return {"idle_health_ms": statistics.median(latencies), "idle_not_200": refused}
    finally:
        for connection in idle:
            with contextlib.suppress(OSError):
                connection.close()


COLUMNS = [
    ("rps", "rps@64", "{:.0f}"),
    ("p99_ms", "p99 ms", "{:.1f}"),
    ("cpu_us", "CPU us/req", "{:.0f}"),
    ("errors", "errors", "{:.0f}"),
    ("idle_health_ms", "health ms, idle open", "{:.1f}"),
    ("idle_not_200", "health not 200 /20", "{:.0f}"),
]


def print_table(figures: dict[tuple[str, str], list[dict[str, float]]], rounds: int) -> None:
    print(
        f"\nGET /api/v1/items/{{id}}, 64 connections, one worker; medians of {rounds} rounds "
        "[lowest-highest]; then /health on a new connection with the idle sockets open"
    )
    header = ["bake", "server", *(title for _, title, _ in COLUMNS)]
    rows = [header]
    for (mode, name), runs in figures.items():
        cells = []
        for key, _, fmt in COLUMNS:
            values = [run[key] for run in runs]
            low, high = fmt.format(min(values)), fmt.format(max(values))
            cells.append(f"{fmt.format(statistics.median(values))} [{low}-{high}]")
        rows.append([mode, name, *cells])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
    print("\nRatios to granian (medians): rps, CPU us/req")
    for (mode, name), runs in figures.items():
        reference = figures[(mode, "granian")]
        parts = [f"{mode:>5} {name:>17}"]
        for key in ("rps", "cpu_us"):
            value = statistics.median(run[key] for run in runs)
            base = statistics.median(run[key] for run in reference)
            parts.append(f"{key} {value / base:.2f}x")
        print("  ".join(parts))


if __name__ == "__main__":
    main()
