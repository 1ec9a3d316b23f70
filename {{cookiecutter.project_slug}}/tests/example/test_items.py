import asyncio
import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import APIRouter, Request
from httpx import ASGITransport, AsyncClient

from app.factory import create_app
from app.settings import Settings

ITEMS = "/api/v1/items"


async def create(client: AsyncClient, **fields: object) -> dict[str, object]:
    response = await client.post(ITEMS, json={"title": "A title", **fields})
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


async def test_create_returns_the_stored_item(client: AsyncClient) -> None:
    before = datetime.now(UTC)
    item = await create(client, title="Buy milk", description="two litres")

    assert set(item) == {"id", "title", "description", "created_at"}
    assert isinstance(item["id"], int)
    assert item["title"] == "Buy milk"
    assert item["description"] == "two litres"
    created_at = datetime.fromisoformat(str(item["created_at"]))
    assert created_at.utcoffset() == timedelta(0), "created_at must carry a UTC offset"
    # The database clock sets it (SQLite's to the second).
    assert before - timedelta(seconds=5) < created_at < datetime.now(UTC) + timedelta(seconds=5)


async def test_description_is_optional(client: AsyncClient) -> None:
    item = await create(client)
    assert item["description"] is None


async def test_read_returns_the_item(client: AsyncClient) -> None:
    item = await create(client, description="d")
    response = await client.get(f"{ITEMS}/{item['id']}")
    assert response.status_code == 200
    assert response.json() == item


async def test_list_returns_items_in_creation_order_and_pages(client: AsyncClient) -> None:
    created = [await create(client, title=f"item {n}") for n in range(5)]

    response = await client.get(ITEMS)
    assert response.status_code == 200
    assert response.json() == created

    page = await client.get(ITEMS, params={"offset": 1, "limit": 2})
    assert page.status_code == 200
    assert page.json() == created[1:3]
    assert (await client.get(ITEMS, params={"offset": 5})).json() == []


async def test_list_defaults_to_50_items(client: AsyncClient) -> None:
    for n in range(51):
        await create(client, title=f"item {n}")
    assert len((await client.get(ITEMS)).json()) == 50
    assert len((await client.get(ITEMS, params={"limit": 100})).json()) == 51


async def test_patch_changes_only_the_fields_sent(client: AsyncClient) -> None:
    item = await create(client, title="old", description="keep me")

    response = await client.patch(f"{ITEMS}/{item['id']}", json={"title": "new"})
    assert response.status_code == 200
    assert response.json() == {**item, "title": "new"}

    response = await client.patch(f"{ITEMS}/{item['id']}", json={"description": None})
    assert response.json() == {**item, "title": "new", "description": None}

    response = await client.patch(f"{ITEMS}/{item['id']}", json={})
    assert response.status_code == 200
    assert response.json() == {**item, "title": "new", "description": None}
    assert (await client.get(f"{ITEMS}/{item['id']}")).json() == response.json()


async def test_delete_removes_the_item(client: AsyncClient) -> None:
    item = await create(client)

    response = await client.delete(f"{ITEMS}/{item['id']}")
    assert response.status_code == 204
    assert response.content == b""
    assert (await client.get(f"{ITEMS}/{item['id']}")).status_code == 404
    assert (await client.delete(f"{ITEMS}/{item['id']}")).status_code == 404


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_a_missing_item_is_404(client: AsyncClient, method: str) -> None:
    response = await client.request(method, f"{ITEMS}/999999", json={})
    assert response.status_code == 404
    assert response.json() == {"detail": "Item not found"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "title"),
        ({"title": ""}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": None}, "title"),
        ({"title": 42}, "title"),
        ({"title": "nul \x00 inside"}, "title"),
        ({"title": "ok", "description": "nul \x00 inside"}, "description"),
        ({"title": "ok", "description": "x" * 10_001}, "description"),
        ({"title": "ok", "colour": "red"}, "colour"),
    ],
)
async def test_create_rejects_invalid_bodies(
    client: AsyncClient, body: dict[str, object], field: str
) -> None:
    response = await client.post(ITEMS, json=body)
    assert response.status_code == 422
    assert any(error["loc"][-1] == field for error in response.json()["detail"])


async def test_create_accepts_a_title_of_200_characters(client: AsyncClient) -> None:
    item = await create(client, title="é" * 200)
    assert item["title"] == "é" * 200


async def test_create_rejects_a_lone_surrogate(client: AsyncClient) -> None:
    # Valid JSON, but not text any database can store.
    response = await client.post(
        ITEMS, content=b'{"title": "\\ud800"}', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422


async def test_create_rejects_a_body_that_is_not_json(client: AsyncClient) -> None:
    response = await client.post(
        ITEMS, content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422


async def test_a_body_that_is_not_utf8_is_a_documented_400(client: AsyncClient) -> None:
    response = await client.post(
        ITEMS, content=b'{"title": "\xff"}', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "detail" in response.json()


async def test_a_422_does_not_echo_a_long_input_back(client: AsyncClient) -> None:
    response = await client.post(ITEMS, json={"title": "x" * 100_000})
    assert response.status_code == 422
    assert len(response.content) < 1000


@pytest.mark.parametrize("method", ["post", "patch"])
async def test_a_422_names_the_field_the_rule_and_nothing_internal(
    client: AsyncClient, method: str
) -> None:
    item = await create(client)
    url = ITEMS if method == "post" else f"{ITEMS}/{item['id']}"
    response = await client.request(method, url, json={"title": ""})
    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {
                "type": "string_too_short",
                "loc": ["body", "title"],
                "msg": "String should have at least 1 character",
                "input": "",
            }
        ]
    }


async def test_a_body_over_the_limit_is_413_whether_or_not_its_length_is_declared(
    client: AsyncClient,
) -> None:
    body = b'{"title": "' + b"x" * 300_000 + b'"}'
    declared = await client.post(ITEMS, content=body, headers={"content-type": "application/json"})
    assert declared.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # sent without a Content-Length
        for start in range(0, len(body), 65_536):
            yield body[start : start + 65_536]

    streamed = await client.post(
        ITEMS, content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    assert streamed.json() == {"detail": "Content Too Large"}
    assert (await client.get(ITEMS)).json() == []


async def test_a_route_may_take_a_larger_body_while_the_others_keep_the_limit(
    settings: Settings,
) -> None:
    app = create_app(settings)
    uploads = APIRouter()

    @uploads.put("/upload", max_body_size=4 * 1024 * 1024)
    async def upload(request: Request) -> dict[str, int]:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        return {"size": size}

    app.include_router(uploads)
    transport = ASGITransport(app=app)
    async with AsyncClient(transport=transport, base_url="http://localhost") as client:
        uploaded = await client.put("/upload", content=b"x" * 2 * 1024 * 1024)
        elsewhere = await client.post(
            ITEMS, content=b"x" * 300_000, headers={"content-type": "application/json"}
        )
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json() == {"size": 2 * 1024 * 1024}
    assert elsewhere.status_code == 413


async def test_a_body_that_stops_arriving_is_cut_off_with_408(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"request_body_timeout": 0.3}))

    async def a_few_bytes_then_nothing() -> AsyncIterator[bytes]:
        yield b'{"title": '
        await asyncio.sleep(30)

    transport = ASGITransport(app=app)
    async with AsyncClient(transport=transport, base_url="http://localhost") as client:
        response = await client.post(
            ITEMS, content=a_few_bytes_then_nothing(), headers={"content-type": "application/json"}
        )
    assert response.status_code == 408
    assert response.json() == {"detail": "Request body not received within 0.3 seconds"}
    assert response.headers["connection"] == "close"


@pytest.mark.parametrize(
    "body", [{"title": None}, {"title": ""}, {"title": "x" * 201}, {"id": 5}, {"created_at": "x"}]
)
async def test_patch_rejects_invalid_bodies(client: AsyncClient, body: dict[str, object]) -> None:
    item = await create(client, title="unchanged")
    response = await client.patch(f"{ITEMS}/{item['id']}", json=body)
    assert response.status_code == 422
    assert (await client.get(f"{ITEMS}/{item['id']}")).json()["title"] == "unchanged"


@pytest.mark.parametrize("item_id", ["0", "-1", "abc", "1.5", str(2**31), str(2**63)])
async def test_ids_out_of_the_databases_range_are_422(client: AsyncClient, item_id: str) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        response = await client.request(method, f"{ITEMS}/{item_id}", json={})
        assert response.status_code == 422, (method, item_id)


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 101}, {"offset": -1}, {"offset": 2**31}, {"limit": "x"}],
)
async def test_list_rejects_out_of_range_paging(
    client: AsyncClient, params: dict[str, int | str]
) -> None:
    response = await client.get(ITEMS, params=params)
    assert response.status_code == 422


@pytest.mark.parametrize("run", [1, 2])
async def test_each_test_starts_with_no_items(client: AsyncClient, run: int) -> None:
    # Other tests created items; their transactions were rolled back.
    assert (await client.get(ITEMS)).json() == []
    await create(client, title=f"left behind by run {run}")


async def test_the_export_streams_every_item_as_csv(client: AsyncClient) -> None:
    titles = ["first", 'with "quotes", and a comma', "third"]
    for title in titles:
        assert (await client.post("/api/v1/items", json={"title": title})).status_code == 201
    response = await client.get("/api/v1/items/export")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["id", "title", "description", "created_at"]
    assert [row[1] for row in rows[1:]] == titles


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/v1/items"),
        ("patch", "/api/v1/items/{id}"),
        ("post", "/api/v1/items/{id}/tags"),
    ],
)
async def test_a_non_finite_number_is_a_422_that_renders(
    client: AsyncClient, number: str, method: str, path: str
) -> None:
    item = await create(client, title="target")
    for field in ("title", "description", "name"):
        body = '{"' + field + '": ' + number + "}"  # as a client may send it: not JSON
        response = await client.request(
            method,
            path.format(id=item["id"]),
            content=body,
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 422, (body, response.text)
        assert "detail" in response.json()


async def test_a_body_of_thousands_of_unknown_keys_gets_a_small_422(client: AsyncClient) -> None:
    unknown = {f"k{n}": 0 for n in range(10_000)}  # under the size limit
    body = {"title": "ok", **unknown}
    response = await client.post("/api/v1/items", json=body)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert len(detail) == 21
    assert detail[-1] == {"type": "too_many_errors", "loc": [], "msg": "9980 more errors"}
    assert len(response.content) < 4_000
