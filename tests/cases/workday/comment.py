"""A model a developer adds on an ordinary day: related to items, with a timestamp.

Copied into a bake as app/models/comment.py by tests/test_workday.py.
"""

from datetime import datetime

from sqlalchemy import ForeignKey, Text, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, UTCDateTime
from app.models.item import Item


class Comment(Base):
    __tablename__ = "comments"

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now())

    item: Mapped[Item] = relationship(lazy="raise")

    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012
