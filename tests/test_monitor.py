"""Each bake watches its event loop in production: stalls logged with their culprit, metrics.

The bakes are served as in production (scripts/serve.sh: granian, uvloop), with routes that
block the loop added.
"""

import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import TEMPLATE, clean_env
from tests.serve import Load, migrated_copy, production, serving, starve

CASES = TEMPLATE / "tests" / "cases" / "monitor"


def with_stalling_routes(baked: Path, tmp_path: Path, env: dict[str, str]) -> Path:
    project = migrated_copy(baked, tmp_path, env)
    shutil.copy(CASES / "stalls.py", project / "app" / "api" / "routes" / "stalls.py")
    router = project / "app" / "api" / "router.py"
    added = (
        "from app.api.routes import stalls  # noqa: E402\n\nrouter.include_router(stalls.router)"
    )
    router.write_text(f"{router.read_text()}\n{added}\n")
    return project


def line_of(marker: str) -> int:
    lines = (CASES / "stalls.py").read_text().splitlines()
    return next(number for number, line in enumerate(lines, 1) if f"# STALL: {marker}" in line)


def metric(client: httpx.Client, name: str, **labels: str) -> float:
    """A sample's value from /metrics (0 when absent)."""
    text = client.get("/metrics").text
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    pattern = "^" + re.escape(name + (f"{{{wanted}}}" if labels else "")) + r" (\S+)$"
    match = re.search(pattern, text, flags=re.MULTILINE)
    return float(match.group(1)) if match else 0.0


class Served:
    def __init__(self, client: httpx.Client, log: Path) -> None:
        self.client, self.log = client, log

    def wait_for_log(self, *needles: str, within: float = 1.0) -> str:
        """The first log line (with the lines after it) holding every needle, within `within` s."""
        deadline = time.monotonic() + within
        while True:
            for entry in re.split(r"\n(?=\S)", self.log.read_text()):
                if all(needle in entry for needle in needles):
                    return entry
            if time.monotonic() > deadline:
                raise AssertionError(f"no log line with {needles}:\n{self.log.read_text()[-4000:]}")
            time.sleep(0.05)


@pytest.fixture(scope="module")
def served(baked: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp_path = tmp_path_factory.mktemp("monitor")
    env = clean_env(DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}", CPU_WORKERS="1")
    project = with_stalling_routes(baked, tmp_path, env)
    log = tmp_path / "server.log"
    with serving(production(), project, env, log_path=log) as client:
        yield Served(client, log)


@pytest.mark.parametrize("kind", ["sleep", "cpu"])
def test_a_stall_is_logged_with_its_request_and_line_and_counted(served: Served, kind: str) -> None:
    client = served.client
    stalls_before = metric(client, "event_loop_stalls_total")
    request_id = f"stall-{kind}"
    response = client.get(f"/stalls/{kind}", headers={"X-Request-ID": request_id})
    assert response.headers["x-request-id"] == request_id

    entry = served.wait_for_log(
        "Event loop stalled for",
        f"at app/api/routes/stalls.py:{line_of(kind)} in ",
        f"during GET /stalls/{kind} (request {request_id})",
    )
    assert "WARNING app.core.stalls" in entry
    assert metric(client, "event_loop_stalls_total") == stalls_before + 1


def test_a_stall_in_a_streaming_body_names_its_request(served: Served) -> None:
    response = served.client.get("/stalls/stream", headers={"X-Request-ID": "stall-stream"})
    assert response.text == "first\nsecond\n"
    served.wait_for_log(
        "Event loop stalled for",
        f"at app/api/routes/stalls.py:{line_of('stream')} in ",
        "during GET /stalls/stream (request stall-stream)",
    )


def test_a_loop_the_machine_did_not_run_is_starvation_not_a_stall(served: Served) -> None:
    """Runnable but not run (a CPU quota, a crowded node): logged as such, blaming no line."""
    client = served.client
    stalls, starvations = (
        metric(client, "event_loop_stalls_total"),
        metric(client, "event_loop_starvations_total"),
    )
    starve(client.get("/stalls/pid").json()["pid"], seconds=0.4)
    entry = served.wait_for_log("Event loop starved for", within=2.0)
    assert "no code of the app is to blame" in entry
    assert metric(client, "event_loop_starvations_total") >= starvations + 1
    assert metric(client, "event_loop_stalls_total") == stalls


def test_metrics_count_requests_by_route_template_and_sample_the_pools(served: Served) -> None:
    client = served.client
    labels = {"method": "GET", "route": "/api/v1/items/{item_id}", "status": "404"}
    before = metric(client, "http_requests_total", **labels)
    for item_id in (1001, 1002, 1003):
        assert client.get(f"/api/v1/items/{item_id}").status_code == 404
    assert metric(client, "http_requests_total", **labels) == before + 3
    text = client.get("/metrics").text
    for name in [
        "event_loop_lag_seconds_bucket",
        "http_request_duration_seconds_bucket",
        "worker_threads_in_use",
        "db_pool_connections_in_use",
        "db_pool_overflow",
        "db_pool_waiters",
        "cpu_jobs_running",
        "cpu_jobs_queued",
    ]:
        assert re.search(rf"^{name}\b", text, flags=re.MULTILINE), name
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]


def test_a_clean_load_of_30_seconds_logs_no_stall(baked: Path, tmp_path: Path) -> None:
    env = clean_env(DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}", CPU_WORKERS="1")
    project = migrated_copy(baked, tmp_path, env)
    log = tmp_path / "server.log"
    with serving(production(), project, env, log_path=log) as client:
        base_url = str(client.base_url)
        paths = ["/api/v1/items", "/api/v1/items/1", "/health/ready", "/api/v1/examples/primes"]
        loads = [Load(base_url, path, clients=2) for path in paths]
        for load in loads:
            load.__enter__()
        time.sleep(30)
        for load in loads:
            load.__exit__()
        lag_count = metric(client, "event_loop_lag_seconds_count")
        stalls = metric(client, "event_loop_stalls_total")
    answered = [status for load in loads for _, _, status in load.records]
    assert len(answered) > 1000
    assert set(answered) <= {200, 404, 422}, {s: answered.count(s) for s in set(answered)}
    assert lag_count > 30 / 0.025 * 0.9, "the heartbeat did not keep beating"
    assert stalls == 0
    assert "Event loop stalled" not in log.read_text()


def test_metrics_add_up_over_two_workers(baked: Path, tmp_path: Path) -> None:
    shared = tmp_path / "metrics"
    shared.mkdir()
    env = clean_env(
        DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}",
        CPU_WORKERS="1",
        PROMETHEUS_MULTIPROC_DIR=str(shared),
        WEB_CONCURRENCY="2",
    )
    project = migrated_copy(baked, tmp_path, env)
    labels = {"method": "GET", "route": "/api/v1/items/{item_id}", "status": "404"}
    with serving(production(), project, env) as client:
        for item_id in range(40):  # a new connection each: the workers share them out
            with httpx.Client(base_url=client.base_url, timeout=10) as fresh:
                assert fresh.get(f"/api/v1/items/{item_id + 1000}").status_code == 404
        writers = {path.stem.rsplit("_", 1)[1] for path in shared.glob("counter_*.db")}
        assert len(writers) == 2, "both workers counted requests"
        for _ in range(6):  # whichever worker answers /metrics, it counts every worker's
            with httpx.Client(base_url=client.base_url, timeout=10) as fresh:
                assert metric(fresh, "http_requests_total", **labels) == 40


def test_json_logs_carry_each_requests_id(baked: Path, tmp_path: Path) -> None:
    env = clean_env(
        DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}",
        CPU_WORKERS="1",
        LOG_FORMAT="json",
    )
    project = migrated_copy(baked, tmp_path, env)
    log = tmp_path / "server.log"
    with serving(production(), project, env, log_path=log) as client:
        given = client.get("/api/v1/items/1000", headers={"X-Request-ID": "json-1"})
        assert given.headers["x-request-id"] == "json-1"
        forged = client.get("/health", headers={"X-Request-ID": "two words\\r\\nx"})
        assert re.fullmatch(r"[0-9a-f]{32}", forged.headers["x-request-id"])
        entry = Served(client, log).wait_for_log('"json-1"')
    record = json.loads(entry)
    assert record["request_id"] == "json-1"
    assert record["logger"] == "app.access"
    assert "GET /api/v1/items/1000" in record["message"]
    # Every line the app and the server wrote, from start to stop, is one JSON object.
    lines = log.read_text().splitlines()
    assert len(lines) > 8
    for line in lines:
        assert json.loads(line)["level"] in {"INFO", "WARNING"}
