"""Each bake as it is deployed (scripts/serve.sh: granian and its limits): what it refuses at
start-up, and the edges of its server, against clients that are slow, idle or malformed."""

import contextlib
import os
import re
import resource
import selectors
import signal
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import make_url

from tests.helpers import bake, clean_env, create_database, mode_of, run
from tests.postgres import free_port
from tests.serve import (
    answers,
    assert_stopped_gracefully,
    children,
    command_line,
    migrated_copy,
    production,
    serving,
)

HEAD_TIMEOUT = 1.0  # seconds: the server's limits, made short for the tests
BODY_TIMEOUT = 1.0


def test_a_database_not_in_utf8_is_refused_at_start_up(
    baked: Path, postgres_admin_url: str
) -> None:
    url = create_database(postgres_admin_url, f"latin1_{mode_of(baked)}", encoding="LATIN1")
    env = clean_env(DATABASE_URL=url, CPU_WORKERS="1", PORT="0")
    result = run(*production(), cwd=baked, env=env, timeout=60)
    assert result.returncode != 0, result.stdout
    assert "stores text as LATIN1, not UTF-8" in result.stdout + result.stderr
    assert "createdb --encoding=UTF8 --template=template0" in result.stdout + result.stderr


def test_a_database_down_at_start_up_and_not_in_utf8_once_up_is_refused_with_503(
    baked: Path, postgres_admin_url: str, tmp_path: Path
) -> None:
    """The start-up check could not run: every new connection is checked instead."""
    latin1 = create_database(postgres_admin_url, f"late_{mode_of(baked)}", encoding="LATIN1")
    real = make_url(latin1)
    port = free_port()  # where the database will appear: closed at start-up
    env = clean_env(
        DATABASE_URL=real.set(host="127.0.0.1", port=port).render_as_string(hide_password=False),
        CPU_WORKERS="1",
    )
    log = tmp_path / "server.log"
    with serving(production(), baked, env, log_path=log) as client:
        assert client.get("/health/ready").status_code == 503  # down
        with forwarding(port, (real.host or "127.0.0.1", real.port or 5432)):
            for answer in (client.get("/health/ready"), client.post(ITEMS, json={"title": "é"})):
                assert answer.status_code == 503, answer.text
                assert answer.json() == {"detail": "Database unavailable, retry later"}
    assert "stores text as LATIN1, not UTF-8" in log.read_text()


ITEMS = "/api/v1/items"


@contextlib.contextmanager
def forwarding(port: int, target: tuple[str, int]) -> Iterator[None]:
    """A TCP proxy on 127.0.0.1:`port` to `target` (a loopback server), while the block runs."""
    listener = socket.create_server(("127.0.0.1", port))
    stop = threading.Event()

    def pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            upstream = socket.create_connection(target)
            for ends in ((client, upstream), (upstream, client)):
                threading.Thread(target=pipe, args=ends, daemon=True).start()

    acceptor = threading.Thread(target=accept)
    acceptor.start()
    try:
        yield
    finally:
        stop.set()
        acceptor.join()
        listener.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """The async bake (the server's edges are the same in both modes), served by serve.sh,
    with short read timeouts so that the tests can reach them."""
    tmp_path = tmp_path_factory.mktemp("edges")
    env = clean_env(
        DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}",
        GRANIAN_HTTP1_HEADER_READ_TIMEOUT=str(int(HEAD_TIMEOUT * 1000)),
        REQUEST_BODY_TIMEOUT=str(BODY_TIMEOUT),
        # Proxy headers are trusted from this address only, from which nothing connects.
        FORWARDED_ALLOW_IPS="127.0.0.2",
        CPU_WORKERS="1",
    )
    # A thousand sockets here, a thousand in the server: more than the usual soft limit of 1024.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    baked = bake(tmp_path / "bake", database_access="async")
    project = migrated_copy(baked, tmp_path, env)
    with serving(production(), project, env) as client:
        yield client


def raw_connection(client: httpx.Client) -> socket.socket:
    url = client.base_url
    return socket.create_connection((url.host, url.port), timeout=10)


def until_closed(connection: socket.socket, limit: float = 10) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    started, answer = time.monotonic(), b""
    connection.settimeout(limit)
    with contextlib.suppress(ConnectionResetError):
        while chunk := connection.recv(65536):
            answer += chunk
    return answer, time.monotonic() - started


HEAD = b"GET /health HTTP/1.1\r\nHost: localhost\r\n"
SLOW_BODY = (
    b"POST /api/v1/items HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
    b"Content-Length: 100\r\n\r\n{"
)


def test_proxy_headers_from_an_untrusted_client_are_ignored(server: httpx.Client) -> None:
    forged = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}
    response = server.get("/api/v1/items/", headers=forged, follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"].startswith(f"http://127.0.0.1:{server.base_url.port}/")


def test_a_head_past_the_cap_is_refused_as_it_arrives(server: httpx.Client) -> None:
    with raw_connection(server) as connection:
        connection.sendall(HEAD)
        sent, answer = 0, b""
        with contextlib.suppress(OSError):  # the server may hang up while we still send
            while sent < 4 * 1024 * 1024:
                connection.sendall(b"X-Padding: " + b"a" * 4000 + b"\r\n")
                sent += 4013
                time.sleep(0.001)
        with contextlib.suppress(OSError):
            answer = connection.recv(1000)
    assert sent < 1024 * 1024, f"{sent} bytes of headers accepted"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431"), answer


@pytest.mark.parametrize(
    "head",
    [
        HEAD + b"X-Big: " + b"a" * 60_000 + b"\r\n\r\n",
        HEAD + b"".join(b"X-%d: a\r\n" % n for n in range(10_000)) + b"\r\n",
    ],
    ids=["one 60 KB header", "10,000 headers"],
)
def test_a_head_past_the_cap_is_refused_when_it_arrives_at_once(
    server: httpx.Client, head: bytes
) -> None:
    with raw_connection(server) as connection:
        connection.sendall(head)
        answer, _ = until_closed(connection)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]


def test_a_head_that_does_not_arrive_in_time_is_cut_off(server: httpx.Client) -> None:
    with raw_connection(server) as connection:
        connection.sendall(HEAD)
        started = time.monotonic()
        with contextlib.suppress(OSError):  # a byte now and then, until the server hangs up
            while time.monotonic() - started < 10 * HEAD_TIMEOUT:
                connection.sendall(b"X")
                time.sleep(HEAD_TIMEOUT / 10)
        elapsed = time.monotonic() - started
        answer, _ = until_closed(connection)
    assert elapsed < 5 * HEAD_TIMEOUT, f"still reading the head after {elapsed:.1f} s"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer[:100]


def test_a_body_that_does_not_arrive_in_time_is_cut_off_with_408(server: httpx.Client) -> None:
    with raw_connection(server) as connection:
        connection.sendall(SLOW_BODY)
        answer, elapsed = until_closed(connection)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
    assert b"Request body not received within 1 seconds" in answer
    assert elapsed < 5 * BODY_TIMEOUT


def test_an_idle_keep_alive_connection_is_closed(server: httpx.Client) -> None:
    with raw_connection(server) as connection:
        connection.sendall(HEAD + b"\r\n")
        response = b""
        while not response.endswith(b'{"status":"ok"}'):
            response += connection.recv(1000)
        assert response.startswith(b"HTTP/1.1 200")
        answer, elapsed = until_closed(connection)
    assert answer == b""
    assert elapsed < 5 * HEAD_TIMEOUT


def test_content_length_with_transfer_encoding_closes_the_connection(
    server: httpx.Client,
) -> None:
    with raw_connection(server) as connection:
        connection.sendall(
            b"POST /api/v1/items HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
        )
        answer, elapsed = until_closed(connection)
    # RFC 9112 6.3: the chunked body is the body (`{}`: no title), and after the answer the
    # connection is closed, so nothing smuggled after it can be read as another request.
    assert answer.startswith(b"HTTP/1.1 422 "), answer[:100]
    assert re.search(rb"\r\nconnection: close\r\n", answer, re.IGNORECASE), answer
    assert elapsed < 5


def health_latencies(client: httpx.Client, count: int = 20) -> list[float]:
    latencies = []
    for _ in range(count):
        with httpx.Client(base_url=client.base_url, timeout=30) as fresh:  # a new connection
            started = time.monotonic()
            assert fresh.get("/health").status_code == 200
            latencies.append(time.monotonic() - started)
    return latencies


def test_a_thousand_idle_and_slow_clients_cost_health_nothing(server: httpx.Client) -> None:
    """Idle sockets, heads sent a byte at a time and bodies that never come, 1,000 of them kept
    open (those the server cuts off are opened again): /health answers as fast as without."""
    alone = statistics.median(health_latencies(server))
    kinds = [b""] * 400 + [HEAD] * 300 + [SLOW_BODY] * 300
    selector = selectors.DefaultSelector()

    def open_one(kind: bytes) -> None:
        connection = raw_connection(server)
        connection.sendall(kind)
        connection.setblocking(False)
        selector.register(connection, selectors.EVENT_READ, kind)

    for kind in kinds:
        open_one(kind)
    reopened = 0
    try:
        latencies: list[float] = []
        deadline = time.monotonic() + 3 * max(HEAD_TIMEOUT, BODY_TIMEOUT)
        while time.monotonic() < deadline:  # through at least one round of cut-offs
            for key, _ in selector.select(timeout=0):
                connection = key.fileobj
                assert isinstance(connection, socket.socket)
                with contextlib.suppress(OSError):
                    if connection.recv(65536):
                        continue  # an answer (408): the close follows
                selector.unregister(connection)
                connection.close()
                open_one(key.data)
                reopened += 1
            for key in list(selector.get_map().values()):
                if key.data == HEAD:  # a byte of the head now and then
                    with contextlib.suppress(OSError):
                        key.fileobj.send(b"X")  # type: ignore[union-attr]
            latencies += health_latencies(server, count=5)
    finally:
        for key in list(selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
    assert reopened >= 600, "the server cut off too few of the slow and idle clients"
    loaded = statistics.median(latencies)
    assert loaded < alone + 0.1, (
        f"/health: median {loaded * 1000:.0f} ms, alone {alone * 1000:.0f} ms"
    )


def test_on_sigterm_a_request_in_flight_gets_its_answer_then_the_server_stops(
    tmp_path: Path,
) -> None:
    """A request still reading its body when SIGTERM comes (a body that never ends) is let
    finish: it gets its 408 at the body deadline, never a 500 or a cut connection; then the
    lifespan ends and every process exits, none killed."""
    env = clean_env(
        DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}",
        REQUEST_BODY_TIMEOUT="2",
        CPU_WORKERS="1",
    )
    project = migrated_copy(bake(tmp_path / "bake", database_access="async"), tmp_path, env)
    log = tmp_path / "server.log"
    port = free_port()
    with log.open("w") as output:
        server = subprocess.Popen(
            production(), cwd=project, env={**env, "PORT": str(port)}, stdout=output, stderr=output
        )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
                while not answers(client):
                    assert server.poll() is None, log.read_text()
                    time.sleep(0.2)
            with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
                connection.sendall(SLOW_BODY)
                time.sleep(0.5)  # the request is in the app, reading its body
                stopping = time.monotonic()
                server.send_signal(signal.SIGTERM)
                answer, _ = until_closed(connection)
            server.wait(timeout=30)
            stopped = time.monotonic() - stopping
        finally:
            if server.poll() is None:
                server.kill()
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert stopped < 10, f"stopped after {stopped:.1f} s"
    assert server.returncode == 0, log.read_text()[-3000:]
    assert_stopped_gracefully(log.read_text())


def test_a_worker_that_will_not_stop_is_killed_after_the_kill_timeout(tmp_path: Path) -> None:
    """A worker wedged at shutdown (here: frozen with SIGSTOP) does not hold the server for
    ever: GRANIAN_WORKERS_KILL_TIMEOUT seconds after SIGTERM, granian kills it and exits."""
    env = clean_env(
        DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}",
        CPU_WORKERS="1",
        GRANIAN_WORKERS_KILL_TIMEOUT="2",
    )
    project = migrated_copy(bake(tmp_path / "bake", database_access="async"), tmp_path, env)
    log = tmp_path / "server.log"
    port = free_port()
    with log.open("w") as output:
        server = subprocess.Popen(
            production(),
            cwd=project,
            env={**env, "PORT": str(port)},
            stdout=output,
            stderr=output,
            start_new_session=True,  # a group of its own, to kill whatever is left of it
        )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
                while not answers(client):
                    assert server.poll() is None, log.read_text()
                    time.sleep(0.2)
            (worker,) = [pid for pid in children(server.pid) if "granian" in command_line(pid)]
            os.kill(worker, signal.SIGSTOP)
            stopping = time.monotonic()
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
            stopped = time.monotonic() - stopping
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
    assert "Killing worker-1 after it refused to gracefully stop" in log.read_text()
    assert 2 <= stopped < 10, f"stopped after {stopped:.1f} s"
    with pytest.raises(AssertionError):  # the served tests' check catches a real refusal
        assert_stopped_gracefully(log.read_text())


def test_the_kill_timeout_outlasts_every_requests_own_limit(baked: Path) -> None:
    """Stopping kills no request that is within its limits: the default kill timeout is longer
    than the longest of them (the CPU job's, the statement's, the body's)."""
    serve = (baked / "scripts/serve.sh").read_text()
    kill_timeout = re.search(
        r'GRANIAN_WORKERS_KILL_TIMEOUT="\$\{GRANIAN_WORKERS_KILL_TIMEOUT:-(\d+)\}"', serve
    )
    assert kill_timeout, "serve.sh sets a default kill timeout"
    config = (baked / "app/core/config.py").read_text()
    limits = {}
    for name in ("cpu_job_timeout", "db_statement_timeout", "request_body_timeout"):
        default = re.search(rf"{name}: float = Field\(default=([\d.]+)", config)
        assert default, f"{name} has a default in app/core/config.py"
        limits[name] = float(default[1])
    assert int(kill_timeout[1]) > max(limits.values()), limits


def test_run_sh_and_the_image_serve_with_serve_sh(baked: Path) -> None:
    assert re.search(
        r"^PATH=.* exec \./scripts/serve\.sh \"\$@\"$", (baked / "scripts/run.sh").read_text(), re.M
    )
    dockerfile = (baked / "Dockerfile").read_text()
    assert re.search(r'^CMD \["\./scripts/serve\.sh"\]$', dockerfile, re.M)
    assert re.search(r"^\s*DOCS_ENABLED=false", dockerfile, re.M), "docs off in production"
