from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from app.models.item import DESCRIPTION_MAX_LENGTH, TITLE_MAX_LENGTH
from app.schemas.types import Storable

# The length limits come first, so that they are checked as string rules ("String should have
# at least 1 character"); then the check that the text can be stored.
Title = Annotated[str, Field(min_length=1, max_length=TITLE_MAX_LENGTH), Storable]
Description = Annotated[str, Field(max_length=DESCRIPTION_MAX_LENGTH), Storable] | None


class ItemCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title
    description: Description = None


class ItemUpdate(BaseModel):
    """Any subset of the fields; a field that is sent must be valid."""

    model_config = ConfigDict(extra="forbid")

    # `None` only stands for "not sent": an explicit null is refused below, and the
    # schema does not offer it.
    title: Title | SkipJsonSchema[None] = None
    description: Description = None

    @field_validator("title")
    @classmethod
    def _title_is_not_null(cls, value: str | None) -> str:
        if value is None:
            raise ValueError("title cannot be null; leave it out to keep the current title")
        return value


class ItemRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    description: str | None
    created_at: datetime
