from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from app.models.tag import TAG_NAME_MAX_LENGTH
from app.schemas.types import Storable


class TagCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=TAG_NAME_MAX_LENGTH), Storable]


class TagRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
