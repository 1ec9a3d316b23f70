"""A bake served for real: a server process on a loopback port, and a client of it."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
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


def uvicorn(*options: str) -> list[str]:
    """The README's serving command, `uvicorn app.main:app`, on $PORT."""
    command = f"exec {sys.executable} -m uvicorn app.main:app --port $PORT {' '.join(options)}"
    return ["sh", "-c", command.rstrip()]


@contextmanager
def serving(command: list[str], project: Path, env: dict[str, str]) -> Iterator[httpx.Client]:
    """Start a server command that listens on $PORT; yield a client once it answers; stop it."""
    port = free_port()
    # Output goes to a file: a pipe nobody reads would fill up and stall the server's logging.
    with tempfile.TemporaryFile(mode="w+") as log:
        server = subprocess.Popen(
            command,
            cwd=project,
            env={**env, "PORT": str(port)},
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # to stop the whole process group (scripts run uvicorn)
        )
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
            os.killpg(server.pid, signal.SIGINT)
            server.wait(timeout=30)
        output = read(log)
    assert "Application shutdown complete" in output, output[-5000:]


def read(log: IO[str]) -> str:
    log.seek(0)
    return log.read()


def answers(client: httpx.Client) -> bool:
    try:
        client.get("/health")
    except httpx.TransportError:
        return False
    return True
