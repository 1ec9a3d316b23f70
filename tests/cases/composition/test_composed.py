"""Composed database dependencies, through the tests' client: the same answers as served."""

from httpx import AsyncClient


async def test_a_session_and_a_read_share_the_request(client: AsyncClient) -> None:
    created = await client.post("/api/v1/items", json={"title": "one"})
    assert created.status_code == 201
    for path in ("/composed", "/composed/reversed"):
        assert (await client.get(path)).json() == {"user": "ada", "items": 1}


async def test_a_server_side_cursor_on_the_read_connection(client: AsyncClient) -> None:
    for title in ("a", "b"):
        assert (await client.post("/api/v1/items", json={"title": title})).status_code == 201
    response = await client.get("/composed/stream")
    assert response.json() == ["a", "b"]
