"""Each bake sends its CPU work to a real task queue (Celery on Redis) when configured.

A Redis server and a Celery worker run on loopback, started here; the bake is served with
CPU_BACKEND=celery and the primes endpoint goes through the queue, in both modes.
"""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import TEMPLATE, clean_env, run
from tests.postgres import free_port
from tests.serve import migrated_copy, production, serving

CASES = TEMPLATE / "tests" / "cases" / "queue"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway Redis server on a loopback port, keeping nothing on disk."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is missing: apt-get install redis-server (.ci/run does)")
    port = free_port()
    options = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(
        [server, *options], cwd=tmp_path_factory.mktemp("redis"), stdout=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while run("redis-cli", "-p", str(port), "ping").stdout != "PONG\n":
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


class Worker:
    """`celery -A app.worker worker` in the project, with one worker process."""

    def __init__(self, project: Path, env: dict[str, str], log: Path) -> None:
        self.project, self.env = project, env
        command = [sys.executable, "-m", "celery", "-A", "app.worker", "worker",
                   "--concurrency", "1", "--loglevel", "info"]  # fmt: skip
        self.log = log
        self.process = subprocess.Popen(
            command, cwd=project, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 60
        while " ready." not in log.read_text():
            assert self.process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"the worker did not start:\n{log.read_text()}"
            time.sleep(0.2)

    def children(self) -> list[int]:
        tasks = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in tasks.read_text().split()]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def queued(
    baked_with_queue: Path, broker: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[httpx.Client, Worker]]:
    tmp_path = tmp_path_factory.mktemp("queue")
    env = clean_env(
        DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}",
        CPU_BACKEND="celery",
        CELERY_BROKER_URL=broker,
        CPU_WORKERS="1",
        CPU_QUEUE_SIZE="2",
        CPU_JOB_TIMEOUT="60",
    )
    project = migrated_copy(baked_with_queue, tmp_path, env)
    shutil.copy(CASES / "jobs.py", project / "app" / "api" / "routes" / "jobs.py")
    router = project / "app" / "api" / "router.py"
    added = "from app.api.routes import jobs  # noqa: E402\n\nrouter.include_router(jobs.router)"
    router.write_text(f"{router.read_text()}\n{added}\n")
    worker = Worker(project, env, tmp_path / "worker.log")
    try:
        with serving(production(), project, env) as client:
            yield client, worker
    finally:
        worker.stop()


def primes(client: httpx.Client, below: int) -> httpx.Response:
    return client.get("/api/v1/examples/primes", params={"below": below}, timeout=60)


def test_the_primes_endpoint_is_served_by_the_queue(
    queued: tuple[httpx.Client, Worker],
) -> None:
    client, worker = queued
    assert primes(client, 1000).json() == {"below": 1000, "count": 168}
    assert primes(client, 100_000).json() == {"below": 100_000, "count": 9592}
    # The worker ran them, and its log names each job after its function, one line a job.
    log = worker.log.read_text()
    assert log.count("app.services.primes.count_primes_below[") >= 2, log[-3000:]
    assert "app.run_function[" not in log, log[-3000:]


def test_a_jobs_exception_reaches_the_request(queued: tuple[httpx.Client, Worker]) -> None:
    client, _ = queued
    answer = client.get("/jobs/explode").json()
    assert answer == {"raised": "ValueError", "message": "boom from the worker"}


def test_health_stays_fast_while_the_queue_is_busy_and_a_full_queue_is_refused(
    queued: tuple[httpx.Client, Worker],
) -> None:
    client, _ = queued
    answers: list[httpx.Response] = []
    threads = [
        threading.Thread(target=lambda: answers.append(primes(client, 500_000))) for _ in range(5)
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    latencies = []
    for _ in range(20):
        started = time.monotonic()
        assert client.get("/health").status_code == 200
        latencies.append(time.monotonic() - started)
        time.sleep(0.05)
    for thread in threads:
        thread.join()
    assert max(latencies) < 0.2, latencies
    # One job runs and two wait (CPU_WORKERS + CPU_QUEUE_SIZE); two are refused.
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200, 200, 200, 503, 503], [answer.text for answer in answers]


def test_a_job_whose_worker_process_dies_runs_again(queued: tuple[httpx.Client, Worker]) -> None:
    client, worker = queued
    result: list[httpx.Response] = []
    request = threading.Thread(target=lambda: result.append(primes(client, 1_500_000)))
    request.start()
    time.sleep(1.0)  # the job is running in the worker's one process
    [child] = worker.children()
    os.kill(child, signal.SIGKILL)
    request.join()
    assert result[0].json() == {"below": 1_500_000, "count": 114155}
    assert "WorkerLostError" in worker.log.read_text() or "SIGKILL" in worker.log.read_text()


def test_a_job_past_its_limit_is_killed_on_the_worker(
    queued: tuple[httpx.Client, Worker],
) -> None:
    """The client gets its 503 at CPU_JOB_TIMEOUT, and the worker stops the job then too."""
    _, worker = queued
    env = {**worker.env, "CPU_JOB_TIMEOUT": "2"}
    with serving(production(), worker.project, env) as client:
        [child] = worker.children()
        started = time.monotonic()
        answer = primes(client, 10_000_000)  # minutes of work
        waited = time.monotonic() - started
    assert answer.status_code == 503, answer.text
    assert waited < 10, waited
    deadline = time.monotonic() + 20
    while child in worker.children() and time.monotonic() < deadline:
        time.sleep(0.2)  # the worker replaces the process it killed
    assert child not in worker.children(), worker.log.read_text()[-3000:]
    log = worker.log.read_text()
    assert "Hard time limit" in log or "Terminating" in log or "SIGKILL" in log, log[-3000:]


def test_a_broker_that_is_down_answers_503(baked_with_queue: Path, tmp_path: Path) -> None:
    env = clean_env(
        DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}",
        CPU_BACKEND="celery",
        CELERY_BROKER_URL="redis://127.0.0.1:1/0",  # nothing listens on port 1 of loopback
    )
    project = migrated_copy(baked_with_queue, tmp_path, env)
    with serving(production(), project, env) as client:
        started = time.monotonic()
        answer = primes(client, 1000)
        waited = time.monotonic() - started
        assert client.get("/health").status_code == 200
    assert answer.status_code == 503, answer.text
    assert "task queue is unreachable" in answer.json()["detail"]
    assert waited < 10, waited
