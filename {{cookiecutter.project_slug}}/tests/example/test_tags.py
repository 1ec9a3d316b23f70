"""Tags: a relationship of items, loaded where it is needed, and constraints that answer 409."""

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import make_transient_to_detached

from app.api.routes.items import ItemDep, get_item_or_404
from app.factory import create_app
from app.models import Item
from tests.settings import IsolatedSettings

ITEMS = "/api/v1/items"


async def new_item(client: AsyncClient) -> int:
    response = await client.post(ITEMS, json={"title": "Tagged"})
    assert response.status_code == 201, response.text
    item_id: int = response.json()["id"]
    return item_id


async def test_tags_are_added_and_listed_in_name_order(client: AsyncClient) -> None:
    item_id = await new_item(client)
    for name in ["urgent", "home"]:
        response = await client.post(f"{ITEMS}/{item_id}/tags", json={"name": name})
        assert response.status_code == 201, response.text
        assert set(response.json()) == {"id", "name"}
    response = await client.get(f"{ITEMS}/{item_id}/tags")
    assert [tag["name"] for tag in response.json()] == ["home", "urgent"]


async def test_an_item_with_no_tags_has_an_empty_list(client: AsyncClient) -> None:
    item_id = await new_item(client)
    assert (await client.get(f"{ITEMS}/{item_id}/tags")).json() == []


async def test_a_second_tag_of_the_same_name_is_a_conflict(client: AsyncClient) -> None:
    item_id = await new_item(client)
    assert (await client.post(f"{ITEMS}/{item_id}/tags", json={"name": "x"})).status_code == 201
    response = await client.post(f"{ITEMS}/{item_id}/tags", json={"name": "x"})
    assert response.status_code == 409
    assert response.json() == {"detail": "The item already has a tag of that name"}
    # The failed insert rolled back its own request only: the first tag is still there.
    assert len((await client.get(f"{ITEMS}/{item_id}/tags")).json()) == 1


async def test_the_same_name_on_two_items_is_fine(client: AsyncClient) -> None:
    for _ in range(2):
        item_id = await new_item(client)
        response = await client.post(f"{ITEMS}/{item_id}/tags", json={"name": "shared"})
        assert response.status_code == 201


async def test_tags_of_a_missing_item_are_not_found(client: AsyncClient) -> None:
    # The foreign key refuses the tag: the item of the path does not exist, so 404.
    response = await client.post(f"{ITEMS}/999999/tags", json={"name": "x"})
    assert response.status_code == 404
    assert response.json() == {"detail": "Item not found"}
    assert (await client.get(f"{ITEMS}/999999/tags")).status_code == 404


async def test_deleting_an_item_deletes_its_tags(client: AsyncClient) -> None:
    item_id = await new_item(client)
    await client.post(f"{ITEMS}/{item_id}/tags", json={"name": "gone"})
    assert (await client.delete(f"{ITEMS}/{item_id}")).status_code == 204
    assert (await client.get(f"{ITEMS}/{item_id}/tags")).status_code == 404


@pytest.mark.parametrize("name", ["", "x" * 51])
async def test_tag_names_are_bounded(client: AsyncClient, name: str) -> None:
    item_id = await new_item(client)
    response = await client.post(f"{ITEMS}/{item_id}/tags", json={"name": name})
    assert response.status_code == 422


async def test_a_relationship_no_query_loaded_fails_at_once_with_advice() -> None:
    """A handler that forgot `selectinload`: no hidden query, a clear error in the test."""
    item = Item(id=1, title="Tagged")
    make_transient_to_detached(item)  # as if loaded by a query without the tags
    app = create_app(IsolatedSettings(database_url="sqlite://"))
    app.dependency_overrides[get_item_or_404] = lambda: item

    @app.get("/forgot-to-load/{item_id}")
    def tag_names(item: ItemDep) -> list[str]:
        return [tag.name for tag in item.tags]

    transport = ASGITransport(app=app)
    async with AsyncClient(transport=transport, base_url="http://localhost") as client:
        with pytest.raises(InvalidRequestError, match="lazy='raise'") as caught:
            await client.get("/forgot-to-load/1")
    assert any("selectinload(Item.tags)" in note for note in caught.value.__notes__)
