"""Copied into a bake as app/schemas/comment.py by tests/test_workday.py."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class CommentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    body: str = Field(min_length=1, max_length=2000)


class CommentRead(BaseModel):
    id: int
    body: str
    item_title: str
    created_at: datetime
