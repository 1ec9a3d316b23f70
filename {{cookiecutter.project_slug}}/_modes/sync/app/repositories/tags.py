"""Queries for the tags of items: an example of a relationship."""

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.orm import Session

from app.models import Item, Tag
from app.schemas.tag import TagCreate, TagRead

# Built once, its item bound at execution (see app/repositories/items.py).
TAGS_OF_ITEM = (
    select(Item.id, Tag.id.label("tag_id"), Tag.name)
    .outerjoin(Tag, Tag.item_id == Item.id)
    .where(Item.id == bindparam("item_id"))
    .order_by(Tag.name)
)


def read_tags(connection: Connection, item_id: int) -> list[TagRead] | None:
    """The item's tags, or None if there is no such item: the item joined to its tags, one
    query on the read connection, rows made into response models with no ORM objects between."""
    rows = (connection.execute(TAGS_OF_ITEM, {"item_id": item_id})).all()
    if not rows:
        return None
    return [TagRead(id=row.tag_id, name=row.name) for row in rows if row.tag_id is not None]


def add_tag(session: Session, item_id: int, data: TagCreate) -> Tag:
    """Raises IntegrityError if the item has that tag already, or if there is no such item."""
    tag = Tag(item_id=item_id, **data.model_dump())
    session.add(tag)
    session.flush()  # the constraints are checked here, inside the request
    return tag
