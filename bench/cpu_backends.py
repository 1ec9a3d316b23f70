"""Past one machine, on one: the async bake with its CPU work local or on the task queue.

    uv run python bench/cpu_backends.py [--duration 15]

Bakes the async mode, starts a throwaway PostgreSQL (10,000 items) and Redis on loopback, and
serves the bake three ways by its production command (scripts/serve.sh: granian), one at a time:
one worker with the local process pool (the default), one worker with one Celery worker, and two
workers (WEB_CONCURRENCY=2)
with two Celery workers. For each: item reads with wrk at 64 connections (requests per second,
p99), then CPU jobs (primes below 100,000) from 8 client threads for the duration, counting jobs
answered a second and 503s, with /health probed every 10 ms meanwhile (p50, p99). The machine
has 2 cores: a second server worker and a second task worker compete for them, so read the
figures as what the configuration costs or buys here, beside each other, not as scaling.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.run import (
    bake,
    get,
    percentile,
    prepare_database,
    probe_health,
    production,
    wait_until_up,
    wrk,
)
from tests.postgres import find_bindir, free_port, throwaway_postgres

PRIMES = "/api/v1/examples/primes?below=100000"
CONFIGURATIONS = [  # name, server workers, Celery workers (0: the local process pool)
    ("1 web, process pool", 1, 0),
    ("1 web, 1 task worker", 1, 1),
    ("2 web, 2 task workers", 2, 2),
]


@contextmanager
def redis() -> Iterator[str]:
    port = free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no"]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait()


def jobs_under_load(port: int, seconds: float, clients: int = 8) -> dict[str, float]:
    answered, refused = [0], [0]
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            with suppress(OSError):
                status, _ = get(port, PRIMES, timeout=60)
                (answered if status == 200 else refused)[0] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    latencies = probe_health(port, seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return {
        "jobs_per_s": answered[0] / seconds,
        "jobs_503": refused[0],
        "health_p50_ms": percentile(latencies, 50) * 1000,
        "health_p99_ms": percentile(latencies, 99) * 1000,
    }


def measure(
    project: Path, env: dict[str, str], web: int, task_workers: int, duration: int
) -> dict[str, float]:
    port = free_port()
    env = {**env, "WEB_CONCURRENCY": str(web)}
    workers = []
    if task_workers:
        env["CPU_BACKEND"] = "celery"
        for _ in range(task_workers):
            command = [sys.executable, "-m", "celery", "-A", "app.worker", "worker",
                       "--concurrency", "1", "--loglevel", "warning"]  # fmt: skip
            workers.append(
                subprocess.Popen(
                    command,
                    cwd=project,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        time.sleep(5)  # the workers connect to Redis
    command, env = production(env, port)
    server = subprocess.Popen(
        command,
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        wait_until_up(port, server)
        wrk(port, 64, 3)
        reads = wrk(port, 64, duration)
        figures = {
            "items_rps": reads["requests"] / reads["seconds"],
            "items_p99_ms": reads["p99"] / 1000,
        }
        figures.update(jobs_under_load(port, duration))
        return figures
    finally:
        server.terminate()
        server.wait(timeout=30)
        for worker in workers:
            worker.terminate()
            worker.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds per load phase")
    args = parser.parse_args()
    bindir = find_bindir()
    if bindir is None or shutil.which("wrk") is None or shutil.which("redis-server") is None:
        sys.exit("needs PostgreSQL's server binaries, wrk and redis-server")
    work = Path(tempfile.mkdtemp(prefix="bench-queue-"))
    try:
        project = bake(work, "async", task_queue="celery")
        with throwaway_postgres(bindir, "max_connections=300") as server, redis() as broker:
            url = prepare_database(server.url, project)
            env = {**os.environ, "DATABASE_URL": url, "CELERY_BROKER_URL": broker}
            rows = []
            for name, web, task_workers in CONFIGURATIONS:
                print(f"-- {name}", file=sys.stderr, flush=True)
                rows.append((name, measure(project, env, web, task_workers, args.duration)))
        print(f"\nasync bake, {args.duration} s per phase; CPU jobs: {PRIMES} from 8 clients")
        columns = [("items rps", "items_rps", "{:.0f}"), ("items p99 ms", "items_p99_ms", "{:.1f}"),
                   ("jobs/s", "jobs_per_s", "{:.1f}"), ("jobs 503", "jobs_503", "{:.0f}"),
                   ("/health p50 ms", "health_p50_ms", "{:.1f}"),
                   ("/health p99 ms", "health_p99_ms", "{:.1f}")]  # fmt: skip
        print(f"{'configuration':>22}  " + "  ".join(title for title, _, _ in columns))
        for name, figures in rows:
            cells = [form.format(figures[key]).rjust(len(title)) for title, key, form in columns]
            print(f"{name:>22}  " + "  ".join(cells))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
