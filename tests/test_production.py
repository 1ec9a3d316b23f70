"""Each bake as it is deployed: what it refuses at start-up, and the edges of its server."""

import contextlib
import re
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import bake, clean_env, create_database, mode_of, run
from tests.serve import migrated_copy, serving


def test_a_database_not_in_utf8_is_refused_at_start_up(
    baked: Path, postgres_admin_url: str
) -> None:
    url = create_database(postgres_admin_url, f"latin1_{mode_of(baked)}", encoding="LATIN1")
    env = clean_env(DATABASE_URL=url, PROCESS_POOL_WORKERS="1")
    command = [sys.executable, "-m", "uvicorn", "app.main:app", "--port", "0"]
    result = run(*command, cwd=baked, env=env, timeout=60)
    assert result.returncode != 0, result.stderr
    assert "stores text as LATIN1, not UTF-8" in result.stderr
    assert "createdb --encoding=UTF8 --template=template0" in result.stderr


def serving_command() -> list[str]:
    """uvicorn with the limits scripts/run.sh sets (its `export` lines), on $PORT."""
    limits = 'eval "$(grep "^export UVICORN_" scripts/run.sh)"'
    return ["sh", "-c", f"{limits} && exec {sys.executable} -m uvicorn app.main:app --port $PORT"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """The async bake (the server's edges are the same in both modes), served as run.sh does,
    with a small concurrency limit and keep-alive timeout so that the tests can reach them."""
    tmp_path = tmp_path_factory.mktemp("edges")
    env = clean_env(
        DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}",
        UVICORN_LIMIT_CONCURRENCY=str(CONCURRENCY),
        UVICORN_TIMEOUT_KEEP_ALIVE="1",
        # Proxy headers are trusted from this address only, from which nothing connects.
        FORWARDED_ALLOW_IPS="127.0.0.2",
        PROCESS_POOL_WORKERS="1",
    )
    baked = bake(tmp_path / "bake", database_access="async")
    project = migrated_copy(baked, tmp_path, env)
    with serving(serving_command(), project, env) as client:
        yield client


CONCURRENCY = 8


def raw_connection(client: httpx.Client) -> socket.socket:
    url = client.base_url
    return socket.create_connection((url.host, url.port), timeout=10)


def test_the_server_names_no_software_and_ignores_untrusted_proxy_headers(
    server: httpx.Client,
) -> None:
    forged = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}
    response = server.get("/api/v1/items/", headers=forged, follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"].startswith(f"http://127.0.0.1:{server.base_url.port}/")
    assert "server" not in response.headers


def test_headers_past_the_cap_are_refused_not_buffered(server: httpx.Client) -> None:
    with raw_connection(server) as connection:
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")
        sent, answer = 0, b""
        with contextlib.suppress(OSError):  # the server may hang up while we still send
            while sent < 4 * 1024 * 1024:
                connection.sendall(b"X-Padding: " + b"a" * 4000 + b"\r\n")
                sent += 4013
                time.sleep(0.001)
        with contextlib.suppress(OSError):
            answer = connection.recv(1000)
    assert sent < 1024 * 1024, f"{sent} bytes of headers accepted"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer


def test_an_idle_keep_alive_connection_is_closed(server: httpx.Client) -> None:
    with raw_connection(server) as connection:
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        response = b""
        while not response.endswith(b'{"status":"ok"}'):
            response += connection.recv(1000)
        assert response.startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert connection.recv(1000) == b""  # closed by the server
        assert time.monotonic() - started < 5


def test_slow_connections_past_the_limit_get_a_fast_503_and_service_returns(
    server: httpx.Client,
) -> None:
    slow = [raw_connection(server) for _ in range(CONCURRENCY)]
    try:
        for connection in slow:  # a request that never ends its headers
            connection.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        time.sleep(0.2)
        started = time.monotonic()
        assert server.get("/health").status_code == 503
        assert time.monotonic() - started < 1
    finally:
        for connection in slow:
            connection.close()
    deadline = time.monotonic() + 5
    while server.get("/health").status_code != 200:
        assert time.monotonic() < deadline, "still refusing after the slow clients left"
        time.sleep(0.1)


def test_the_container_sets_the_limits_run_sh_sets(baked: Path) -> None:
    script = dict(
        re.findall(
            r'^export (UVICORN_\w+)="\$\{\1:-(.*)\}"$', (baked / "scripts/run.sh").read_text(), re.M
        )
    )
    dockerfile = (baked / "Dockerfile").read_text()
    container = dict(re.findall(r"^(?:ENV)?\s+(UVICORN_\w+)=(\S+?)(?: \\)?$", dockerfile, re.M))
    assert script == container
    assert {"UVICORN_HTTP", "UVICORN_LIMIT_CONCURRENCY", "UVICORN_SERVER_HEADER"} <= set(script)
    assert re.search(r"^\s*DOCS_ENABLED=false", dockerfile, re.M), "docs off in production"
