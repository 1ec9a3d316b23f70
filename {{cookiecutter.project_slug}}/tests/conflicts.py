"""Tables that break each kind of constraint, and the 409 detail each break must get: the
same on SQLite and PostgreSQL (tests/test_conflicts.py, in each mode)."""

from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table, delete, insert

from app.models.base import Base

metadata = MetaData(naming_convention=Base.metadata.naming_convention)
parents = Table(
    "conflict_parents",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(20), unique=True),
)
restricted = Table(
    "conflict_restricted",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("parent_id", ForeignKey("conflict_parents.id", ondelete="RESTRICT")),
)
referring = Table(
    "conflict_referring",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("parent_id", ForeignKey("conflict_parents.id")),
)

CASES = {
    "duplicate": (
        insert(parents).values(id=9, name="one"),
        "Conflicts with something already stored",
    ),
    "reference to nothing": (
        insert(referring).values(parent_id=99),
        "Refers to something that does not exist",
    ),
    "delete restricted": (
        delete(parents).where(parents.c.id == 1),
        "Is still referred to: remove or change what refers to it first",
    ),
    "delete referred to": (
        delete(parents).where(parents.c.id == 2),
        "Is still referred to: remove or change what refers to it first",
    ),
}
