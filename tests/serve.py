"""A bake served for real: a server process on a loopback port, and a client of it."""

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.postgres import free_port


@contextmanager
def serving(command: list[str], project: Path, env: dict[str, str]) -> Iterator[httpx.Client]:
    """Start a server command that listens on $PORT; yield a client once it answers; stop it."""
    port = free_port()
    server = subprocess.Popen(
        command,
        cwd=project,
        env={**env, "PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # to stop the whole process group (scripts run uvicorn)
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            deadline = time.monotonic() + 180
            while not answers(client):
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"no server on port {port}:\n{server.communicate()[0]}")
                time.sleep(0.3)
            yield client
    finally:
        os.killpg(server.pid, signal.SIGINT)
        output, _ = server.communicate(timeout=30)
    assert "Application shutdown complete" in output, output


def answers(client: httpx.Client) -> bool:
    try:
        client.get("/health")
    except httpx.TransportError:
        return False
    return True
