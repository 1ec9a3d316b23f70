"""Routes a developer adds: related rows, and a call to another service.

Copied into an async bake as app/api/routes/comments.py by tests/test_workday.py.
"""

from fastapi import APIRouter, status
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from app.api.deps import HttpClientDep, SessionDep
from app.api.errors import BODY_ERRORS, NOT_FOUND, UNAVAILABLE
from app.api.routes.items import ItemDep
from app.models.comment import Comment
from app.schemas.comment import CommentCreate, CommentRead

router = APIRouter(tags=["comments"], responses=UNAVAILABLE)
WEATHER_URL = "https://weather.example.com/today"


def read(comment: Comment) -> CommentRead:
    return CommentRead(
        id=comment.id,
        body=comment.body,
        item_title=comment.item.title,
        created_at=comment.created_at,
    )


@router.post(
    "/items/{item_id}/comments",
    status_code=status.HTTP_201_CREATED,
    responses=NOT_FOUND | BODY_ERRORS,
)
async def add_comment(item: ItemDep, data: CommentCreate, session: SessionDep) -> CommentRead:
    comment = Comment(item=item, body=data.body)
    session.add(comment)
    await session.flush()
    return read(comment)


@router.get("/items/{item_id}/comments")
async def list_comments(item_id: int, session: SessionDep) -> list[CommentRead]:
    query = (
        select(Comment)
        .where(Comment.item_id == item_id)
        .options(joinedload(Comment.item))
        .order_by(Comment.id)
    )
    return [read(comment) for comment in await session.scalars(query)]


@router.get("/weather")
async def weather(http: HttpClientDep) -> dict[str, str]:
    response = await http.get(WEATHER_URL)
    response.raise_for_status()
    return {"sky": response.json()["sky"]}
