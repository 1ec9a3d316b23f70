"""Queries for items.

Reads that answer a request take the request's read connection and return response models:
SQLAlchemy Core, one query, no ORM bookkeeping. Changes take the request's session, whose
dependency commits; they work on ORM objects.

A read's statement is built once, here, with bound parameters for its values: building it for
each request (`.where(Item.id == item_id)`) cost more CPU than the rest of an item's read.
"""

from collections.abc import AsyncIterator, Sequence
from datetime import datetime

from sqlalchemy import Row, bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from app.models import Item
from app.schemas.item import ItemCreate, ItemRead, ItemUpdate

# The columns of an item's answer, in the order of `ItemRead`.
ITEM_COLUMNS = select(Item.id, Item.title, Item.description, Item.created_at)
ITEM_BY_ID = ITEM_COLUMNS.where(Item.id == bindparam("item_id"))
ITEMS_PAGE = ITEM_COLUMNS.order_by(Item.id).offset(bindparam("offset")).limit(bindparam("limit"))
ItemRow = Row[int, str, str | None, datetime]


async def read_items(connection: AsyncConnection, *, offset: int, limit: int) -> list[ItemRead]:
    rows = await connection.execute(ITEMS_PAGE, {"offset": offset, "limit": limit})
    return [ItemRead.model_validate(row) for row in rows]


async def read_item(connection: AsyncConnection, item_id: int) -> ItemRead | None:
    row = (await connection.execute(ITEM_BY_ID, {"item_id": item_id})).one_or_none()
    return None if row is None else ItemRead.model_validate(row)


async def stream_items(
    connection: AsyncConnection, *, slice_rows: int = 500
) -> AsyncIterator[Sequence[ItemRow]]:
    """Every item, in slices fetched from a server-side cursor: memory stays flat however many
    rows there are. Iterate it while the connection is open (StreamConnectionDep)."""
    query = ITEM_COLUMNS.order_by(Item.id).execution_options(yield_per=slice_rows)
    result = await connection.stream(query)
    async for rows in result.partitions():
        yield rows


async def get_item(session: AsyncSession, item_id: int) -> Item | None:
    return await session.get(Item, item_id)


async def create_item(session: AsyncSession, data: ItemCreate) -> Item:
    item = Item(**data.model_dump())
    session.add(item)
    await session.flush()  # assigns id and created_at
    return item


async def update_item(session: AsyncSession, item: Item, changes: ItemUpdate) -> Item | None:
    """Apply `changes`; None if the item was deleted meanwhile, by another request."""
    for field, value in changes.model_dump(exclude_unset=True).items():
        setattr(item, field, value)
    try:
        await session.flush()
    except StaleDataError:  # the UPDATE found no row
        return None
    return item


async def delete_item(session: AsyncSession, item_id: int) -> bool:
    """Delete the item; False if there was none (or another request deleted it first)."""
    deleted = await session.execute(delete(Item).where(Item.id == item_id).returning(Item.id))
    return deleted.scalar_one_or_none() is not None
