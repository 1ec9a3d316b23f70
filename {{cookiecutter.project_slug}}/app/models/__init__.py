"""Every model, imported here so that `Base.metadata` knows all tables (alembic reads it)."""

from app.models.base import Base as Base
from app.models.item import Item as Item  # the example
from app.models.tag import Tag as Tag  # the example
