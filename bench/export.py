"""Streaming out of the database: the export of 50,000 rows, and /health meanwhile.

    uv run python bench/export.py [--rounds 3]

Bakes both modes, starts a throwaway PostgreSQL with 50,000 items, and serves each bake by its
production command (scripts/serve.sh: one granian worker), interleaved over the rounds. In each
round two clients download `GET /api/v1/items/export` (CSV from a server-side cursor) back to
back for a few seconds while /health is probed every 10 ms; it prints exports a second, rows a
second, the server worker's peak memory growth, and /health's p50 and p99 (the issue's bound:
p99 under 20 ms).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import suppress
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.run import (
    bake,
    connect,
    get,
    percentile,
    probe_health,
    production,
    server_worker,
    wait_until_up,
)
from tests.postgres import free_port, require_bindir, throwaway_postgres

ROWS = 50_000
SECONDS = 8.0


def prepare(admin_url: str, project: Path) -> str:
    with connect(admin_url) as cursor:
        cursor.execute("CREATE DATABASE export_bench")
    url = admin_url.rsplit("/", 1)[0] + "/export_bench"
    env = {**os.environ, "DATABASE_URL": url}
    subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], cwd=project, env=env,
                   check=True, capture_output=True)  # fmt: skip
    with connect(url) as cursor:
        cursor.execute(
            "INSERT INTO items (title, description) "
            "SELECT 'item ' || n, repeat('some text ', 5) FROM generate_series(1, %s) AS n",
            (ROWS,),
        )
    return url


def peak_kib(pid: int) -> int:
    return int(Path(f"/proc/{pid}/status").read_text().split("VmHWM:")[1].split()[0])


def measure(project: Path, url: str) -> dict[str, float]:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": url, "CPU_WORKERS": "1", "LOG_LEVEL": "WARNING"}
    command, env = production(env, port)
    with tempfile.TemporaryFile(mode="w+") as log:
        server = subprocess.Popen(command, cwd=project, env=env, stdout=log, stderr=log, text=True)
        try:
            wait_until_up(port, server)
            worker = server_worker(server.pid)
            get(port, "/api/v1/items?limit=100", timeout=10)
            before = peak_kib(worker)
            exports, rows, stop = [0], [0], threading.Event()

            def download() -> None:
                while not stop.is_set():
                    with suppress(OSError):
                        status, body = get(port, "/api/v1/items/export", timeout=60)
                        if status == 200:
                            exports[0] += 1
                            rows[0] += body.count(b"\n") - 1

            clients = [threading.Thread(target=download) for _ in range(2)]
            started = time.perf_counter()
            for client in clients:
                client.start()
            latencies = probe_health(port, SECONDS)
            stop.set()
            for client in clients:
                client.join()
            elapsed = time.perf_counter() - started
            grown = peak_kib(worker) - before
        finally:
            server.terminate()
            server.wait(timeout=30)
    return {
        "exports/s": exports[0] / elapsed,
        "rows/s": rows[0] / elapsed,
        "peak MB": grown / 1024,
        "health p50 ms": percentile(latencies, 50) * 1000,
        "health p99 ms": percentile(latencies, 99) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    bindir = require_bindir("the benchmark starts a throwaway PostgreSQL")
    with tempfile.TemporaryDirectory() as directory, throwaway_postgres(bindir) as server:
        work = Path(directory)
        bakes = {mode: bake(work, mode) for mode in ("async", "sync")}
        url = prepare(server.url, bakes["async"])
        results: dict[str, list[dict[str, float]]] = {mode: [] for mode in bakes}
        for _ in range(rounds):
            for mode, project in bakes.items():  # interleaved: the machine's drift hits both
                results[mode].append(measure(project, url))
    print(f"export of {ROWS:,} rows, 2 clients, /health probed every 10 ms; median [min, max]")
    for mode, runs in results.items():
        cells = []
        for key in runs[0]:
            values = sorted(run[key] for run in runs)
            cells.append(
                f"{key} {values[len(values) // 2]:,.1f} [{values[0]:,.1f}, {values[-1]:,.1f}]"
            )
        print(f"  {mode:5}  " + "; ".join(cells))


if __name__ == "__main__":
    main()
