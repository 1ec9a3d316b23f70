from datetime import datetime

from sqlalchemy import String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UTCDateTime

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

    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012
