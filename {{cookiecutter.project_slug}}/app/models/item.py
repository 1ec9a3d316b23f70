from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import String, Text, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, UTCDateTime

if TYPE_CHECKING:
    from app.models.tag import Tag

TITLE_MAX_LENGTH = 200
# Checked by the API (the column is `text`): every stored text has a bound.
DESCRIPTION_MAX_LENGTH = 10_000


class Item(Base):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(TITLE_MAX_LENGTH))
    description: Mapped[str | None] = mapped_column(Text)
    # Set by the database; fetched back in the INSERT's RETURNING clause (eager defaults).
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())

    # lazy="raise": reading `item.tags` without loading them in the query fails at once (an
    # implicit load would be a hidden query per item, and in async code it cannot run at all).
    # Load them where they are needed: `.options(selectinload(Item.tags))`.
    # passive_deletes: the database deletes an item's tags (ON DELETE CASCADE).
    tags: Mapped[list["Tag"]] = relationship(
        back_populates="item",
        lazy="raise",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Tag.name",
    )

    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012
