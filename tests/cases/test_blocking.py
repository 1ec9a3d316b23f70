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
from collections.abc import AsyncIterator, Callable
from typing import Any
from pathlib import Path

import httpx
import pytest
import uvloop
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import ASGITransport, AsyncClient

from app.api.deps import get_http_client
from app.api.routes import blocking
from app.settings import Settings
from app.factory import create_app
from app.resources import resources_of

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
    "busy-150ms",
    # as users write it
    "default-arg-sleep",
    "import-module",
    "gil-wait",
    "pipe-recv",
    "simple-queue",
    "many-products",
    "jinja-per-request",
    "read-text",
    "subprocess",
    "sync-httpx",
    "event-wait",
    "future-result",
    "dependency-file",
    "password-hash",
    "compress",
    "list-dir",
]
# Routes that take a file to work on: (route, bytes of the file).
BLOCKING_ON_FILES = [
    ("file-digest", 20_000_000),
    ("csv-file", 2_300_000),
    ("unbuffered-read", 8_000_000),
    ("copy-file", 0),
]
CORRECT = ["async-sleep", "sleep-in-thread", "cpu-in-process-pool", "sleep-in-def"]
# The same, as users write it (under /correct).
CORRECT_AS_USERS_WRITE_IT = [
    "asyncio-run-in-def",
    "anyio-run-in-def",
    "strptime",
    "zoneinfo",
    "executor-block",
    "cpu-30ms",
    "read-in-thread",
    "digest-in-thread",
    "loop-getaddrinfo",
    "def-dependency-file",
    "sync-stream",
    "lazy-import-in-def",
]


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


async def test_blocking_psycopg3(client: AsyncClient) -> None:
    response = await client.get("/blocking/psycopg3", params={"dsn": os.environ["BLOCKING_DSN"]})
    assert response.json() == {"value": 1}


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], str]:
    """A file of about `size` bytes of CSV rows, made by the test (its own I/O)."""
    directory = tmp_path_factory.mktemp("data")

    def make(size: int) -> str:
        path = directory / f"{size}.csv"
        row = b"2026-12-06,42,some text that a report would hold\n"
        path.write_bytes(row * (size // len(row)))
        return str(path)

    return make


@pytest.mark.parametrize(("route", "size"), BLOCKING_ON_FILES)
async def test_blocking_on_files(
    client: AsyncClient, data_file: Callable[[int], str], route: str, size: int
) -> None:
    response = await client.get(f"/blocking/{route}", params={"path": data_file(size)})
    assert response.status_code == 200


async def test_blocking_service_called_directly() -> None:
    """A unit test of an async service function: the app's code, judged like a request."""
    assert await blocking.report_status("http://127.0.0.1:9/") == 0


async def test_blocking_service_computing_when_called_directly() -> None:
    assert await blocking.summarise(blocking.HOLD) > 0


async def test_correct_service_called_directly() -> None:
    assert await blocking.poll_status() == "ok"


async def test_correct_test_computes_itself(client: AsyncClient) -> None:
    """The test's own CPU work is not the app's, however long."""
    payload = [blocking.compute(0.001) for _ in range(200)]
    response = await client.get("/correct/json-body-small", params={"numbers": str(payload)})
    assert response.json() == {"count": 200}


async def test_blocking_call_later(client: AsyncClient) -> None:
    response = await client.post("/blocking/call-later")
    assert response.status_code == 200


async def test_correct_right_after_a_call_later(client: AsyncClient) -> None:
    """Innocent: the callback scheduled by the previous test's request is charged to it."""
    response = await client.get("/health")
    assert response.status_code == 200


def test_blocking_with_the_test_client(settings: Settings) -> None:
    """FastAPI's TestClient, as its docs teach it: the app runs on the client's own loop, in a
    thread, and is judged there too."""
    with TestClient(create_app(settings)) as client:
        assert client.get("/blocking/sleep").status_code == 200


def test_correct_with_the_test_client(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:  # its default host, testserver
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/blocking/async-sleep").status_code == 200


def test_blocking_on_uvloop(settings: Settings) -> None:
    """Tests that serve the app on uvloop, as production does: the guard refuses, saying how."""

    async def drive() -> int:
        app = create_app(settings)
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://localhost") as client:
            return (await client.get("/blocking/cpu")).status_code

    assert uvloop.run(drive()) == 200


async def test_correct_fake_user_from_a_fixture_file(app: FastAPI, client: AsyncClient) -> None:
    """FastAPI's docs' pattern: an async override of a dependency, here loading its user from a
    JSON file of the tests. The test's code, though the app calls it."""
    fixture = Path(__file__).with_name("user.json")

    async def fake_user() -> dict[str, str]:
        return json.loads(fixture.read_text())

    app.dependency_overrides[blocking.current_user] = fake_user
    try:
        response = await client.get("/correct/me")
    finally:
        del app.dependency_overrides[blocking.current_user]
    assert response.json() == {"name": "Ada"}


async def test_correct_mock_transport_reading_a_fixture_file(
    app: FastAPI, client: AsyncClient
) -> None:
    """A stub of the other service, as httpx's docs write it: its handler reads a fixture."""
    fixture = Path(__file__).with_name("user.json")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200 if fixture.read_bytes() else 500)

    stub = type(resources_of(app).http_client)(transport=httpx.MockTransport(handler))
    app.dependency_overrides[get_http_client] = lambda: stub
    try:
        response = await client.get("/correct/remote", params={"url": "http://service.test/"})
    finally:
        del app.dependency_overrides[get_http_client]
    assert response.json() == {"status": 200}


async def test_correct_table_of_requests(client: AsyncClient) -> None:
    """25 requests of ~6 ms of CPU each, back to back: each is judged on its own."""
    for _ in range(25):
        assert (await client.get("/correct/cpu-6ms")).status_code == 200


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


@pytest.mark.parametrize("route", CORRECT_AS_USERS_WRITE_IT)
async def test_correct_as_users_write_it(client: AsyncClient, route: str) -> None:
    response = await client.get(f"/correct/{route}")
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
    upload.write_bytes(Path(__file__).read_bytes()[:10_000] * 10)
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


# Starves its parent's event loop for 200 ms when told to (SIGUSR1), as a crowded machine does:
# the loop's thread is runnable, but a real-time process holds its CPU.
STARVER = """
import os, signal, time
parent = os.getppid()
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
try:
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
except PermissionError:
    print("no real-time scheduling", flush=True)
    raise SystemExit
print("ready", flush=True)
signal.sigwait([signal.SIGUSR1])
cpu, before = min(os.sched_getaffinity(0)), os.sched_getaffinity(parent)
os.sched_setaffinity(0, {cpu})
os.sched_setaffinity(parent, {cpu})  # the parent's main thread: the one running the loop
os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
deadline = time.monotonic() + 0.2
while time.monotonic() < deadline:
    pass
os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
os.sched_setaffinity(parent, before)
"""


async def test_correct_when_the_machine_starves_the_process(client: AsyncClient) -> None:
    """Not blocking: the time the loop's thread was runnable but not run is not the app's."""
    with subprocess.Popen([sys.executable, "-c", STARVER], stdout=subprocess.PIPE) as starver:
        assert starver.stdout is not None
        if starver.stdout.readline() != b"ready\n":
            pytest.skip("starving a process takes real-time scheduling (root, CAP_SYS_NICE)")
        response = await client.get("/correct/paused", params={"helper": starver.pid})
    assert response.json()["lost"] >= 0.15, "the process was not starved: nothing was proved"


async def test_blocking_lifespan_shutdown(client: AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
