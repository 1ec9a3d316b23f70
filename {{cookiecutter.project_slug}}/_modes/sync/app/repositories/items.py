"""Queries for items. Functions take the request's session; the session dependency commits."""

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from app.models import Item
from app.schemas.item import ItemCreate, ItemUpdate


def list_items(session: Session, *, offset: int, limit: int) -> Sequence[Item]:
    return session.scalars(select(Item).order_by(Item.id).offset(offset).limit(limit)).all()


def get_item(session: Session, item_id: int) -> Item | None:
    return session.get(Item, item_id)


def create_item(session: Session, data: ItemCreate) -> Item:
    item = Item(**data.model_dump())
    session.add(item)
    session.flush()  # assigns id and created_at
    return item


def update_item(session: Session, item: Item, changes: ItemUpdate) -> Item | None:
    """Apply `changes`; None if the item was deleted meanwhile, by another request."""
    for field, value in changes.model_dump(exclude_unset=True).items():
        setattr(item, field, value)
    try:
        session.flush()
    except StaleDataError:  # the UPDATE found no row
        return None
    return item


def delete_item(session: Session, item: Item) -> None:
    session.delete(item)
    session.flush()
