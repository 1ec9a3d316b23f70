"""Queries for the tags of items: an example of a relationship, loaded where it is needed."""

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app.models import Item, Tag
from app.schemas.tag import TagCreate


async def read_tags(session: AsyncSession, item_id: int) -> list[Tag] | None:
    """The item's tags, or None if there is no such item.

    `selectinload` loads them with one more query, here, in async code: `Item.tags` is
    `lazy="raise"`, so reading it without this fails at once rather than querying implicitly.
    """
    query = select(Item).where(Item.id == item_id).options(selectinload(Item.tags))
    item = await session.scalar(query)
    return None if item is None else item.tags


async def add_tag(session: AsyncSession, item_id: int, data: TagCreate) -> Tag:
    """Raises IntegrityError if the item has that tag already, or if there is no such item."""
    tag = Tag(item_id=item_id, **data.model_dump())
    session.add(tag)
    await session.flush()  # the constraints are checked here, inside the request
    return tag
