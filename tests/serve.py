"""A bake served for real: a server process on a loopback port, and a client of it."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx

from tests.helpers import run
from tests.postgres import free_port


def migrated_copy(baked: Path, tmp_path: Path, env: dict[str, str]) -> Path:
    """A copy of the bake in `tmp_path`, migrated (`alembic upgrade head`) to `DATABASE_URL`."""
    project = tmp_path / baked.name
    shutil.copytree(baked, project)
    migrated = run(sys.executable, "-m", "alembic", "upgrade", "head", cwd=project, env=env)
    assert migrated.returncode == 0, migrated.stderr
    return project


def production() -> list[str]:
    """The bake's production command, `scripts/serve.sh` (granian, with its limits), on $PORT
    and with this environment's granian. WEB_CONCURRENCY in the environment sets its workers."""
    return ["sh", "-c", f'PATH="{Path(sys.executable).parent}:$PATH" exec ./scripts/serve.sh']


# The pid of the server serving each port, while `serving` runs it.
SERVERS: dict[int, int] = {}


def server_workers(client: httpx.Client) -> list[int]:
    """The pids of the worker processes of the server `client` talks to."""
    main = SERVERS[client.base_url.port or 80]
    return [pid for pid in children(main) if "granian" in command_line(pid)]


def children(pid: int) -> list[int]:
    """The processes `pid` started, read from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process just ended
            continue
        if int(fields[1]) == pid:  # the parent's pid
            found.append(int(stat.parent.name))
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:  # the process just ended
        return ""


@contextmanager
def serving(
    command: list[str], project: Path, env: dict[str, str], log_path: Path | None = None
) -> Iterator[httpx.Client]:
    """Start a server command that listens on $PORT; yield a client once it answers; stop it.

    Its output goes to `log_path` (for a test that reads it while the server runs) or a
    temporary file: a pipe nobody reads would fill up and stall the server's logging.
    """
    port = free_port()
    with log_path.open("w+") if log_path else tempfile.TemporaryFile(mode="w+") as log:
        server = subprocess.Popen(
            command,
            cwd=project,
            env={**env, "PORT": str(port)},
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # a group of its own, to kill whatever is left of it
        )
        SERVERS[port] = server.pid
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                deadline = time.monotonic() + 180
                while not answers(client):
                    if server.poll() is not None or time.monotonic() > deadline:
                        server.kill()
                        server.wait()
                        raise AssertionError(f"no server on port {port}:\n{read(log)}")
                    time.sleep(0.3)
                yield client
        finally:
            del SERVERS[port]
            # As Docker and Kubernetes stop it: SIGTERM to the server process only, which stops
            # its workers. Not to the whole group: granian 2.8.9 wedges about 1 worker in 100
            # that gets two stop signals at once (3 in 5 when they come within 4 ms).
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:  # never leave a server behind: kill, then fail
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
                raise AssertionError(f"no stop 30 s after SIGTERM:\n{read(log)[-5000:]}") from None
        output = read(log)
    assert_stopped_gracefully(output)


LIFESPAN_ENDED = "Lifespan ended: every resource released"  # app/factory.py's last line


def assert_stopped_gracefully(output: str) -> None:
    """The server stopped after the app's lifespan ended, killing nothing: granian (production)
    or uvicorn (`fastapi dev`)."""
    ends = ("Granian shutdown completed", "Application shutdown complete")
    assert any(end in output for end in ends), output[-5000:]
    killed = output.find("refused to gracefully stop")
    if killed != -1:
        # granian 2.8.9 reaps a worker from two threads (its watcher's join() and its stop's
        # join(timeout)); on a busy machine the second can find the pid gone before the first
        # has stored the exit code, take the worker for alive and "kill" it, after it exited.
        # A real refusal leaves a worker whose lifespan never ended.
        workers = output.count("Spawning worker-") - output.count("Respawning worker-")
        assert output.count(LIFESPAN_ENDED, 0, killed) >= workers, output[-5000:]


def read(log: IO[str]) -> str:
    log.seek(0)
    return log.read()


def answers(client: httpx.Client) -> bool:
    try:
        client.get("/health")
    except httpx.TransportError:
        return False
    return True


class Load:
    """Client threads that GET `path` in a loop, recording (started, finished, status)."""

    def __init__(self, base_url: str, path: str, clients: int) -> None:
        self.records: list[tuple[float, float, int]] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, args=(base_url, path)) for _ in range(clients)
        ]

    def _loop(self, base_url: str, path: str) -> None:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    status = client.get(path).status_code
                except httpx.TransportError:
                    status = 0
                self.records.append((started, time.monotonic(), status))

    def __enter__(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


# Holds one CPU with a real-time process, with the target's main thread pinned to that CPU: the
# target is runnable but not run, as on a crowded node or under a CPU quota.
STARVER = """
import os, sys, time
target, seconds = int(sys.argv[1]), float(sys.argv[2])
cpu, before = min(os.sched_getaffinity(0)), os.sched_getaffinity(target)
os.sched_setaffinity(0, {cpu})
os.sched_setaffinity(target, {cpu})
os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    pass
os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
os.sched_setaffinity(target, before)
"""


def starve(pid: int, seconds: float) -> None:
    """Keep process `pid`'s main thread from running for `seconds` (needs root: real-time)."""
    result = run(sys.executable, "-c", STARVER, str(pid), str(seconds), timeout=30)
    assert result.returncode == 0, result.stderr
