"""What a production review checks at the HTTP level: headers, hosts and the docs switch."""

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from app.core.middleware.security_headers import SECURITY_HEADERS
from app.factory import create_app
from app.settings import Settings
from tests.probes import probed


@pytest.mark.parametrize(
    ("path", "host", "status"),
    [
        ("/health", "localhost", 200),
        ("/nothing-here", "localhost", 404),
        ("/health", "evil.example", 400),
    ],
)
async def test_every_answer_carries_the_security_headers(
    client: AsyncClient, path: str, host: str, status: int
) -> None:
    response = await client.get(path, headers={"Host": host})
    assert response.status_code == status
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value


async def test_a_forged_host_is_refused_never_reflected_in_a_redirect(client: AsyncClient) -> None:
    allowed = await client.get("/probes/database/")
    assert allowed.status_code == 307
    assert allowed.headers["location"] == "http://localhost/probes/database"

    forged = await client.get("/probes/database/", headers={"Host": "evil.example"})
    assert forged.status_code == 400
    assert "location" not in forged.headers
    assert "evil.example" not in forged.text


def test_allowed_hosts_are_read_as_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:  # whatever the shell says, only this variable is read
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("ALLOWED_HOSTS", "api.example.com, *.example.org")
    assert Settings(_env_file=None).allowed_hosts == ["api.example.com", "*.example.org"]


async def test_the_docs_and_schema_can_be_switched_off(app: FastAPI, settings: Settings) -> None:
    without_docs = create_app(settings.model_copy(update={"docs_enabled": False}))
    for served, expected in [(app, 200), (without_docs, 404)]:
        transport = ASGITransport(app=served)
        async with AsyncClient(transport=transport, base_url="http://localhost") as client:
            for path in ["/docs", "/redoc", "/openapi.json"]:
                assert (await client.get(path)).status_code == expected, path


@pytest.mark.parametrize(("proxies", "trusted"), [(["127.0.0.1"], True), (["10.0.0.1"], False)])
async def test_proxy_headers_are_believed_from_the_proxies_allowed_only(
    settings: Settings, proxies: list[str], trusted: bool
) -> None:
    app = probed(create_app(settings.model_copy(update={"forwarded_allow_ips": proxies})))
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    # httpx's ASGI transport is a client at 127.0.0.1: the proxy, when it is allowed.
    transport = ASGITransport(app=app)
    async with (
        LifespanManager(app),
        AsyncClient(transport=transport, base_url="http://localhost") as client,
    ):
        redirect = await client.get("/probes/database/", headers=forwarded)
        metrics = await client.get("/metrics", headers=forwarded)
    scheme = "https" if trusted else "http"
    assert redirect.headers["location"] == f"{scheme}://localhost/probes/database"
    # /metrics answers loopback only: the forwarded client is not.
    assert metrics.status_code == (404 if trusted else 200)
