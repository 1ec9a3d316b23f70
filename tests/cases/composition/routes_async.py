"""Routes that compose database dependencies, as users write them (async mode)."""

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends
from sqlalchemy import func, select, text

from app.api.deps import ReadConnectionDep, SessionDep
from app.models import Item

router = APIRouter(prefix="/composed", tags=["composed"])


async def current_user(session: SessionDep) -> str:
    """The usual auth dependency: it looks the user up through the request's session."""
    await session.execute(text("SELECT 1"))
    return "ada"


CurrentUser = Annotated[str, Depends(current_user)]


@router.get("")
async def session_then_read(user: CurrentUser, connection: ReadConnectionDep) -> dict[str, object]:
    count = await connection.scalar(select(func.count()).select_from(Item))
    await asyncio.sleep(0.01)  # holds its connection a while, as real handlers do
    return {"user": user, "items": count}


@router.get("/reversed")
async def read_then_session(connection: ReadConnectionDep, user: CurrentUser) -> dict[str, object]:
    count = await connection.scalar(select(func.count()).select_from(Item))
    await asyncio.sleep(0.01)
    return {"user": user, "items": count}


@router.get("/stream")
async def stream_titles(connection: ReadConnectionDep) -> list[str]:
    """A server-side cursor on the read connection: on PostgreSQL it needs a transaction."""
    result = await connection.stream(select(Item.title).order_by(Item.id))
    return [title async for (title,) in result]
