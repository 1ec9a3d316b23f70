from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, UTCDateTime

if TYPE_CHECKING:
    from app.models.item import Item

TAG_NAME_MAX_LENGTH = 50


class Tag(Base):
    """A label on an item: an item has each name once, and its tags go when it goes."""

    __tablename__ = "tags"
    __table_args__ = (UniqueConstraint("item_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(TAG_NAME_MAX_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())

    # lazy="raise": the item is loaded by the query that wants it, or not at all (see Item.tags).
    item: Mapped["Item"] = relationship(back_populates="tags", lazy="raise")

    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012
