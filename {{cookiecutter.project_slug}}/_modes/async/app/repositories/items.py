"""Queries for items. Functions take the request's session; the session dependency commits."""

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from app.models import Item
from app.schemas.item import ItemCreate, ItemUpdate


async def list_items(session: AsyncSession, *, offset: int, limit: int) -> Sequence[Item]:
    result = await session.scalars(select(Item).order_by(Item.id).offset(offset).limit(limit))
    return result.all()


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


async def delete_item(session: AsyncSession, item: Item) -> None:
    await session.delete(item)
    await session.flush()
