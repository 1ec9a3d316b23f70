"""Request ids, metrics and the stall monitor, in process (the served bake is the template's
to test: tests/test_monitor.py there)."""

import asyncio
import logging
import re
import time
import warnings

import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient

from app.core.middleware.request_context import route_template
from app.core.stalls import Stall, StallMonitor, request_name
from app.factory import create_app
from app.settings import Settings
from tests.settings import IsolatedSettings


async def test_a_sane_request_id_is_kept_and_any_other_replaced(client: AsyncClient) -> None:
    kept = await client.get("/health", headers={"X-Request-ID": "edge-42.a_b:c"})
    assert kept.headers["x-request-id"] == "edge-42.a_b:c"
    for insane in ["two words", "x" * 129, "semi;colon", ""]:
        replaced = await client.get("/health", headers={"X-Request-ID": insane})
        assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["x-request-id"]), insane


async def test_log_records_of_a_request_carry_its_id(caplog: pytest.LogCaptureFixture) -> None:
    # Nothing listens on port 1 of the loopback interface: the request logs an outage.
    settings = IsolatedSettings(
        database_url="postgresql://nobody@127.0.0.1:1/nothing", cpu_workers=1
    )
    app = create_app(settings)
    async with LifespanManager(app):
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://localhost") as client:
            with caplog.at_level(logging.WARNING, logger="app.api.errors"):
                response = await client.get("/health/ready", headers={"X-Request-ID": "r-1"})
    assert response.status_code == 503
    [record] = [r for r in caplog.records if r.name == "app.api.errors"]
    assert record.__dict__["request_id"] == "r-1"


async def test_metrics_are_served_unless_switched_off(settings: Settings) -> None:
    served = {}
    for enabled in (True, False):
        app = create_app(settings.model_copy(update={"metrics_enabled": enabled}))
        transport = ASGITransport(app=app)
        async with (
            LifespanManager(app),
            AsyncClient(transport=transport, base_url="http://localhost") as client,
        ):
            served[enabled] = await client.get("/metrics")
    assert served[True].status_code == 200
    assert served[True].headers["content-type"].startswith("text/plain")
    assert "# TYPE http_requests_total counter" in served[True].text
    assert served[False].status_code == 404


@pytest.mark.usefixtures("probe_table")
async def test_requests_are_counted_by_route_template(client: AsyncClient) -> None:
    await client.get("/probes/rows/424242")
    metrics = (await client.get("/metrics")).text
    assert 'route="/probes/rows/{row_id}",status="404"' in metrics
    assert "/424242" not in metrics


async def test_a_made_up_method_is_one_label(client: AsyncClient) -> None:
    for method in ("BREW", "PROPFIND", "X-ANYTHING"):
        await client.request(method, "/health")
    metrics = (await client.get("/metrics")).text
    assert 'method="other",route="/health"' in metrics
    assert "BREW" not in metrics
    assert "PROPFIND" not in metrics


@pytest.mark.parametrize(
    ("allowed", "served"),
    [(["127.0.0.1"], True), (["10.0.0.0/8", "::1"], False), (["127.0.0.0/8"], True), ([], False)],
)
async def test_metrics_answer_only_the_clients_allowed(
    settings: Settings, allowed: list[str], served: bool
) -> None:
    app = create_app(settings.model_copy(update={"metrics_allowed_clients": allowed}))
    # httpx's ASGI transport is a client at 127.0.0.1.
    transport = ASGITransport(app=app)
    async with (
        LifespanManager(app),
        AsyncClient(transport=transport, base_url="http://localhost") as client,
    ):
        response = await client.get("/metrics")
    assert response.status_code == (200 if served else 404)


def test_a_stall_report_names_a_request_with_its_path_escaped() -> None:
    scope: dict[str, object] = {"type": "http", "method": "GET", "path": "/a\nWARNING x\x1b[31m"}
    assert request_name(scope) == "GET /a\\nWARNING x\\x1b[31m"


def test_a_route_template_keeps_the_prefix_and_never_the_ids() -> None:
    class Route:
        path_regex = re.compile(r"^/items/(?P<item_id>[^/]+)$")
        path_format = "/items/{item_id}"

    scope = {"type": "http", "path": "/api/v1/items/7", "route": Route()}
    assert route_template(scope) == "/api/v1/items/{item_id}"
    assert route_template({"type": "http", "path": "/nowhere"}) == "unmatched"


def _block_the_loop() -> None:
    time.sleep(0.15)  # the culprit


async def test_the_stall_monitor_reports_a_stall_once_with_its_culprit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stalls: list[Stall] = []
    monitor = StallMonitor(
        0.05,
        on_lag=lambda _: None,
        on_stall=stalls.append,
        on_starved=lambda _: None,
        on_tick=lambda: None,
        in_flight=int,
    )
    watching = asyncio.create_task(monitor.run())
    await asyncio.sleep(0.1)
    with caplog.at_level(logging.WARNING, logger="app.core.stalls"):
        for _ in range(3):  # one warning; the two stalls after it, from the same line, counted
            _block_the_loop()
            await asyncio.sleep(0.1)
        watching.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watching
    assert len(stalls) == 3
    assert all(0.12 < stall.seconds < 1 for stall in stalls)
    for stall in stalls:  # sampled while the culprit ran
        assert stall.sample is not None
        assert "_block_the_loop" in [frame.name for frame in stall.sample.stack]
    # The session's app has a monitor of its own, which saw the stalls too: find this one's.
    logged = [r.getMessage() for r in caplog.records if r.name == "app.core.stalls"]
    first = f"Event loop stalled for {stalls[0].seconds * 1000:.0f} ms at"
    assert [message for message in logged if message.startswith(first)] != []
    summaries = [message for message in logged if "more time(s) at" in message]
    assert [message.split(" at ")[0] for message in summaries] == [
        "Event loop stalled 2 more time(s)"
    ]


async def test_several_workers_without_a_shared_metrics_directory_are_warned_of(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings.model_copy(update={"web_concurrency": 2}))
    with caplog.at_level(logging.WARNING, logger="app.core.monitoring"):
        async with LifespanManager(app):
            pass
    [warning] = [r.getMessage() for r in caplog.records if r.name == "app.core.monitoring"]
    assert "PROMETHEUS_MULTIPROC_DIR is not set" in warning


@pytest.mark.usefixtures("probe_table")
async def test_each_request_is_logged_once_with_its_id(
    client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="app.access"):
        await client.get("/probes/rows/7?x=%0a", headers={"X-Request-ID": "r-7"})
    [record] = [r for r in caplog.records if r.name == "app.access"]
    assert record.__dict__["request_id"] == "r-7"
    line = record.getMessage()
    assert re.fullmatch(
        r'127\.0\.0\.1:\d+ - "GET /probes/rows/7\?x=%0a HTTP/1\.1" 404 [\d.]+ms', line
    )


async def test_warnings_are_log_records_while_the_app_runs(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings)
    with caplog.at_level(logging.WARNING, logger="py.warnings"):
        async with LifespanManager(app):
            with warnings.catch_warnings():  # the tests turn warnings into errors
                warnings.simplefilter("always")
                warnings.warn("a deprecated call", DeprecationWarning, stacklevel=1)
    [record] = [r for r in caplog.records if r.name == "py.warnings"]
    assert "DeprecationWarning: a deprecated call" in record.getMessage()
