"""Queries for the tags of items: an example of a relationship, loaded where it is needed."""

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from app.models import Item, Tag
from app.schemas.tag import TagCreate


def read_tags(session: Session, item_id: int) -> list[Tag] | None:
    """The item's tags, or None if there is no such item.

    `selectinload` loads them with one more query, here: `Item.tags` is `lazy="raise"`, so
    reading it without this fails at once rather than querying once per item, unseen.
    """
    query = select(Item).where(Item.id == item_id).options(selectinload(Item.tags))
    item = session.scalar(query)
    return None if item is None else item.tags


def add_tag(session: Session, item_id: int, data: TagCreate) -> Tag:
    """Raises IntegrityError if the item has that tag already, or if there is no such item."""
    tag = Tag(item_id=item_id, **data.model_dump())
    session.add(tag)
    session.flush()  # the constraints are checked here, inside the request
    return tag
