"""Every model, imported here so that `Base.metadata` knows all tables (alembic reads it)."""

from app.models.base import Base
from app.models.item import Item
from app.models.tag import Tag

__all__ = ["Base", "Item", "Tag"]
