"""The shared HTTP client, and how to test code that calls another service: no network."""

from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.api.deps import HttpClientDep, get_http_client
from app.factory import create_app
from app.resources import resources_of
from app.settings import Settings
from tests.settings import IsolatedSettings

STATUS_URL = "https://status.example.com/api/status"


def test_the_lifespan_opened_one_client_with_the_settings(app: FastAPI, settings: Settings) -> None:
    client = resources_of(app).http_client
    assert isinstance(client, httpx.Client)
    assert client.timeout == httpx.Timeout(settings.http_timeout)


def remote_service(request: httpx.Request) -> httpx.Response:
    """Stands in for the other service: answers as it would, records nothing, needs no network."""
    if request.url == STATUS_URL:
        return httpx.Response(200, json={"status": "green"})
    return httpx.Response(404)


@pytest.fixture
def app_calling_out() -> Iterator[FastAPI]:
    """An app with a route that calls out, its HTTP client stubbed by `remote_service`."""
    app = create_app(IsolatedSettings(database_url="sqlite://"))

    @app.get("/upstream-status")
    def upstream_status(http: HttpClientDep) -> dict[str, str]:
        response = http.get(STATUS_URL)
        response.raise_for_status()
        return {"upstream": response.json()["status"]}

    stub = httpx.Client(transport=httpx.MockTransport(remote_service))
    app.dependency_overrides[get_http_client] = lambda: stub
    yield app
    app.dependency_overrides.clear()


def test_a_route_calls_the_stubbed_service(app_calling_out: FastAPI) -> None:
    # FastAPI's TestClient, as its docs test an app: no lifespan needed, the client is stubbed.
    response = TestClient(app_calling_out).get("/upstream-status")
    assert response.json() == {"upstream": "green"}
