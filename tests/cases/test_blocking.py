"""Naive tests: each checks only the status code. The loop guard must fail the blocking ones.

Copied into a bake as tests/test_blocking.py by tests/test_loop_guard.py, which expects every
`test_blocking*` test to fail once with the guard's message and every `test_correct*` one to
pass. The order matters: the first test starts the app (its lifespan blocks at start-up), the
last one stops it (its lifespan blocks at shut-down).
"""

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any
from pathlib import Path

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from app.api.routes import blocking

from tests.loop_guard import allow_blocking

BLOCKING = [
    "sleep",
    "sleep-swallowed",
    "cpu",
    "busy-100ms",
    "c-extension",
    "sqlite3",
    "sync-engine",
    "http-client",
    "dependency",
    "middleware",
    "first-only",
    "lazy-import",
    "bound-sleep",
    "getaddrinfo",
    "stream",
    "log-to-file",
    "wait-in-c",
    "client-per-request",
]
CORRECT = ["async-sleep", "sleep-in-thread", "cpu-in-process-pool", "sleep-in-def"]


async def test_blocking_lifespan_startup(client: AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200


@pytest.mark.parametrize("route", BLOCKING)
async def test_blocking(client: AsyncClient, route: str) -> None:
    response = await client.get(f"/blocking/{route}")
    assert response.status_code == 200


async def test_correct_once_the_cache_is_built(client: AsyncClient) -> None:
    """The cache built by /blocking/first-only: a rerun would pass, so a rerun proves nothing."""
    response = await client.get("/blocking/first-only")
    assert response.status_code == 200


async def test_blocking_psycopg2(client: AsyncClient) -> None:
    response = await client.get("/blocking/psycopg2", params={"dsn": os.environ["BLOCKING_DSN"]})
    assert response.status_code == 200


async def test_blocking_spawned_task(client: AsyncClient) -> None:
    response = await client.post("/blocking/spawn")
    assert response.status_code == 200


async def test_correct_right_after_a_spawned_task(client: AsyncClient) -> None:
    """Innocent: the task spawned by the previous test is charged to that test."""
    response = await client.get("/health")
    assert response.status_code == 200


async def test_blocking_websocket(app: FastAPI) -> None:
    """One websocket session, in plain ASGI messages: httpx speaks no websocket."""
    scope = {
        "type": "websocket",
        "path": "/blocking/ws",
        "headers": [(b"host", b"localhost")],
        "query_string": b"",
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert [message["type"] for message in sent] == [
        "websocket.accept",
        "websocket.send",
        "websocket.close",
    ]


async def test_blocking_big_json_body_without_a_size_limit() -> None:
    """A `def` handler, yet FastAPI parses its body on the loop: only a size limit helps."""
    app = FastAPI()  # none of the bake's middleware: no body size limit
    app.include_router(blocking.big_body)
    body = json.dumps(list(range(2_000_000)))
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://localhost") as client:
        response = await client.post(
            "/blocking/big-json", content=body, headers={"content-type": "application/json"}
        )
    assert response.json() == {"count": 2_000_000}


async def test_blocking_after_an_excused_call(client: AsyncClient) -> None:
    with allow_blocking(reason="this one call is excused"):
        assert (await client.get("/blocking/sleep")).status_code == 200
    assert (await client.get("/blocking/bound-sleep")).status_code == 200


@pytest.mark.parametrize("route", CORRECT)
async def test_correct(client: AsyncClient, route: str) -> None:
    response = await client.get(f"/blocking/{route}")
    assert response.status_code == 200


@pytest.mark.allow_blocking(reason="proves that a test can opt out")
async def test_correct_when_opted_out(client: AsyncClient) -> None:
    response = await client.get("/blocking/sleep")
    assert response.status_code == 200


async def test_correct_when_one_call_is_excused(client: AsyncClient) -> None:
    with allow_blocking(reason="proves that one call can be excused"):
        response = await client.get("/blocking/cpu")
    assert response.status_code == 200


async def test_session_in_async_def(client: AsyncClient) -> None:
    """Correct in async mode (the session's calls are awaited), blocking in sync mode."""
    response = await client.get("/blocking/session")
    assert response.status_code == 200


# --- the patterns of FastAPI's docs: none of them blocks the loop ---


@pytest.mark.parametrize("path", ["/correct/file", "/correct-static/blocking.py"])
async def test_correct_files(client: AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert b"def install" in response.content


async def test_correct_upload(client: AsyncClient) -> None:
    response = await client.post("/correct/upload", files={"file": ("a.txt", b"x" * 100_000)})
    assert response.json() == {"size": 100_000}


async def test_correct_test_does_its_own_file_io(client: AsyncClient, tmp_path: Path) -> None:
    """The test's own I/O (a fixture file, tmp_path, an upload from disk) is not the app's."""
    upload = tmp_path / "upload.bin"
    upload.write_bytes(Path(__file__).read_bytes() * 20)
    with upload.open("rb") as file:
        response = await client.post("/correct/upload", files={"file": file})
    assert response.json() == {"size": upload.stat().st_size}


async def test_correct_template(client: AsyncClient) -> None:
    response = await client.get("/correct/page")
    assert "Hello, guard!" in response.text


async def test_correct_logging(client: AsyncClient) -> None:
    response = await client.get("/correct/log")
    assert response.status_code == 200


@pytest.fixture
async def remote_service() -> AsyncIterator[str]:
    """A tiny HTTP server on loopback: the service the app calls."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/"


async def test_correct_http_client(client: AsyncClient, remote_service: str) -> None:
    response = await client.get("/correct/remote", params={"url": remote_service})
    assert response.json() == {"status": 204}


async def test_correct_background_task(client: AsyncClient) -> None:
    response = await client.post("/correct/background")
    assert response.status_code == 200


async def test_correct_streaming(client: AsyncClient) -> None:
    response = await client.get("/correct/stream")
    assert response.text == "0 1 2 "


# Stops its parent process for 200 ms when told to (SIGUSR1), as a busy machine can.
PAUSER = """
import os, signal, sys, time
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
print("ready", flush=True)
signal.sigwait([signal.SIGUSR1])
os.kill(os.getppid(), signal.SIGSTOP)
time.sleep(0.2)
os.kill(os.getppid(), signal.SIGCONT)
"""


async def test_correct_when_the_machine_stops_the_process(client: AsyncClient) -> None:
    """Not blocking: the time the process could not run is not charged to the app."""
    with subprocess.Popen([sys.executable, "-c", PAUSER], stdout=subprocess.PIPE) as pauser:
        assert pauser.stdout is not None and pauser.stdout.readline() == b"ready\n"
        response = await client.get("/correct/paused", params={"helper": pauser.pid})
    assert response.json()["lost"] >= 0.15, "the process was not stopped: nothing was proved"


async def test_blocking_lifespan_shutdown(client: AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
