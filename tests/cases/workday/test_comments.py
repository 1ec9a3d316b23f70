"""A developer's tests for the day's work. Copied into a bake by tests/test_workday.py."""

import inspect
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from app.api.deps import get_http_client

ITEMS = "/api/v1/items"


async def test_comments_come_back_with_their_item(client: AsyncClient) -> None:
    item = (await client.post(ITEMS, json={"title": "Walk the dog"})).json()
    for body in ["first", "second"]:
        response = await client.post(f"{ITEMS}/{item['id']}/comments", json={"body": body})
        assert response.status_code == 201, response.text
    comments = (await client.get(f"{ITEMS}/{item['id']}/comments")).json()
    assert [(c["body"], c["item_title"]) for c in comments] == [
        ("first", "Walk the dog"),
        ("second", "Walk the dog"),
    ]
    assert comments[0]["created_at"].endswith(("Z", "+00:00"))  # UTCDateTime: UTC, with offset


async def test_a_comment_on_a_missing_item_is_not_found(client: AsyncClient) -> None:
    response = await client.post(f"{ITEMS}/999999/comments", json={"body": "x"})
    assert response.status_code == 404


async def test_a_duplicate_tag_is_a_conflict(client: AsyncClient) -> None:
    item = (await client.post(ITEMS, json={"title": "Tagged"})).json()
    first = await client.post(f"{ITEMS}/{item['id']}/tags", json={"name": "home"})
    again = await client.post(f"{ITEMS}/{item['id']}/tags", json={"name": "home"})
    assert (first.status_code, again.status_code) == (201, 409)
    assert again.json()["detail"]


def weather_service(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"sky": "clear"})


@pytest.fixture
def stubbed_weather(app: FastAPI) -> Iterator[None]:
    transport = httpx.MockTransport(weather_service)
    stub: httpx.AsyncClient | httpx.Client = (
        httpx.AsyncClient(transport=transport)
        if inspect.iscoroutinefunction(get_http_client)
        else httpx.Client(transport=transport)
    )
    app.dependency_overrides[get_http_client] = lambda: stub
    yield
    del app.dependency_overrides[get_http_client]


@pytest.mark.usefixtures("stubbed_weather")
async def test_the_weather_comes_from_the_other_service(client: AsyncClient) -> None:
    assert (await client.get("/api/v1/weather")).json() == {"sky": "clear"}
