"""Routes that compose database dependencies, as users write them (sync mode)."""

import time
from typing import Annotated

from fastapi import APIRouter, Depends
from sqlalchemy import func, select, text

from app.api.deps import ReadConnectionDep, SessionDep
from app.models import Item

router = APIRouter(prefix="/composed", tags=["composed"])


def current_user(session: SessionDep) -> str:
    """The usual auth dependency: it looks the user up through the request's session."""
    session.execute(text("SELECT 1"))
    return "ada"


CurrentUser = Annotated[str, Depends(current_user)]


@router.get("")
def session_then_read(user: CurrentUser, connection: ReadConnectionDep) -> dict[str, object]:
    count = connection.scalar(select(func.count()).select_from(Item))
    time.sleep(0.01)  # holds its connection a while, as real handlers do
    return {"user": user, "items": count}


@router.get("/reversed")
def read_then_session(connection: ReadConnectionDep, user: CurrentUser) -> dict[str, object]:
    count = connection.scalar(select(func.count()).select_from(Item))
    time.sleep(0.01)
    return {"user": user, "items": count}


@router.get("/stream")
def stream_titles(connection: ReadConnectionDep) -> list[str]:
    """A server-side cursor on the read connection: on PostgreSQL it needs a transaction."""
    result = connection.execute(
        select(Item.title).order_by(Item.id).execution_options(stream_results=True)
    )
    return [title for (title,) in result]
