"""Each bake survives faults under load: a database restart, racing writes, and shutdown."""

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg2
import pytest

from tests.helpers import clean_env, create_database, mode_of
from tests.postgres import PostgresServer, free_port, require_bindir, throwaway_postgres
from tests.serve import (
    Load,
    answers,
    assert_stopped_gracefully,
    children,
    command_line,
    migrated_copy,
    production,
    serving,
)


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """A server of this module's own, which its tests stop and start."""
    bindir = require_bindir("this module starts and stops a server of its own")
    with throwaway_postgres(bindir) as server:
        yield server


def test_the_throwaway_server_wants_a_password_as_a_real_one_does(
    postgres: PostgresServer,
) -> None:
    with pytest.raises(psycopg2.OperationalError, match="password"):
        psycopg2.connect(postgres.url.replace(f":{postgres.password}@", "@"))
    psycopg2.connect(postgres.url).close()


def test_a_database_restart_under_load_gives_fast_503s_then_full_service(
    baked: Path, postgres: PostgresServer, tmp_path: Path
) -> None:
    url = create_database(postgres.url, f"restart_{mode_of(baked)}")
    env = clean_env(DATABASE_URL=url)
    project = migrated_copy(baked, tmp_path, env)
    with serving(production(), project, env) as client:
        item = client.post("/api/v1/items", json={"title": "survives"}).json()
        with Load(str(client.base_url), f"/api/v1/items/{item['id']}", clients=8) as load:
            time.sleep(1.5)
            down = time.monotonic()
            postgres.stop()
            time.sleep(2)
            postgres.start()
            up = time.monotonic()
            time.sleep(3)
    records = load.records
    assert {status for *_, status in records} <= {200, 503}, "only successes and 503s"
    before = [status for started, finished, status in records if finished < down]
    assert before
    assert set(before) == {200}
    during = [(started, finished) for started, finished, status in records if status == 503]
    assert during, "the outage was not noticed"
    assert max(finished - started for started, finished in during) < 5, "a 503 was slow"
    # Recovery without a restart of the app: everything after a short grace period succeeds.
    after = [status for started, _, status in records if started > up + 1]
    assert len(after) > 50
    assert set(after) == {200}, f"{after.count(503)} of {len(after)} failed after recovery"


def test_a_patch_racing_a_delete_is_404_never_500(
    baked: Path, postgres: PostgresServer, tmp_path: Path
) -> None:
    url = create_database(postgres.url, f"race_{mode_of(baked)}")
    env = clean_env(DATABASE_URL=url)
    project = migrated_copy(baked, tmp_path, env)
    statuses: list[int] = []
    with serving(production(), project, env) as client:
        base_url = str(client.base_url)

        def send(method: str, path: str) -> None:
            with httpx.Client(base_url=base_url, timeout=30) as racer:
                statuses.append(racer.request(method, path, json={"title": "new"}).status_code)

        for _ in range(40):
            path = f"/api/v1/items/{client.post('/api/v1/items', json={'title': 'x'}).json()['id']}"
            racers = [threading.Thread(target=send, args=(m, path)) for m in ("PATCH", "DELETE")]
            for racer in racers:
                racer.start()
            for racer in racers:
                racer.join()
    assert set(statuses) <= {200, 204, 404}, statuses


def test_two_server_processes_share_one_sqlite_file_under_mixed_reads_and_writes(
    baked: Path, tmp_path: Path
) -> None:
    env = clean_env(DATABASE_URL=f"sqlite:///{tmp_path / 'shared.db'}", WEB_CONCURRENCY="2")
    project = migrated_copy(baked, tmp_path, env)
    statuses: list[int] = []
    with serving(production(), project, env) as client:
        base_url = str(client.base_url)
        stop = threading.Event()

        def work() -> None:
            with httpx.Client(base_url=base_url, timeout=30) as worker:
                while not stop.is_set():
                    created = worker.post("/api/v1/items", json={"title": "shared"})
                    statuses.append(created.status_code)
                    if created.status_code != 201:
                        continue
                    path = f"/api/v1/items/{created.json()['id']}"
                    statuses.append(worker.get("/api/v1/items").status_code)
                    statuses.append(worker.patch(path, json={"title": "changed"}).status_code)
                    statuses.append(worker.get(path).status_code)
                    statuses.append(worker.delete(path).status_code)

        threads = [threading.Thread(target=work) for _ in range(6)]
        for thread in threads:
            thread.start()
        time.sleep(4)
        stop.set()
        for thread in threads:
            thread.join()
    assert len(statuses) > 100
    assert set(statuses) <= {200, 201, 204}, {s: statuses.count(s) for s in set(statuses)}


def test_shutdown_lets_requests_in_flight_finish_and_stops_every_worker(
    baked: Path, tmp_path: Path
) -> None:
    env = clean_env(DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}")
    project = migrated_copy(baked, tmp_path, env)
    port = free_port()
    log = (tmp_path / "server.log").open("w+")
    server = subprocess.Popen(
        production(), cwd=project, env={**env, "PORT": str(port)}, stdout=log, stderr=log
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=base_url, timeout=2) as probe:
            while not answers(probe):
                assert server.poll() is None, (tmp_path / "server.log").read_text()
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        workers = [pid for pid in children(server.pid) if "granian" in command_line(pid)]
        assert workers, "no server workers found"
        workers += [child for pid in workers for child in children(pid)]
        assert len(workers) > 1, "no process-pool workers found"
        with Load(base_url, "/api/v1/examples/primes?below=150000", clients=3) as load:
            time.sleep(1.5)
            stopping = time.monotonic()
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
        stopped = time.monotonic() - stopping
    finally:
        if server.poll() is None:
            server.kill()
        log.close()
    output = (tmp_path / "server.log").read_text()
    assert stopped < 12, f"shutdown took {stopped:.1f} s"
    assert_stopped_gracefully(output)
    in_flight = [status for started, _, status in load.records if started < stopping - 0.05]
    assert in_flight
    assert set(in_flight) == {200}, in_flight
    deadline = time.monotonic() + 5
    while any(Path(f"/proc/{pid}").exists() for pid in workers):
        assert time.monotonic() < deadline, "a worker outlived the server"
        time.sleep(0.1)
