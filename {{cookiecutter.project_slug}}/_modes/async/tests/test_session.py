from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from app.db.session import get_session
from app.models import Item


async def test_the_request_session_commits_when_the_handler_succeeds(
    app: FastAPI, client: AsyncClient
) -> None:
    dependency = get_session(SimpleNamespace(app=app))  # type: ignore[arg-type]
    session = await anext(dependency)
    session.add(Item(title="kept"))
    with pytest.raises(StopAsyncIteration):
        await anext(dependency)
    titles = [item["title"] for item in (await client.get("/api/v1/items")).json()]
    assert titles == ["kept"]


async def test_the_request_session_rolls_back_when_the_handler_raises(
    app: FastAPI, client: AsyncClient
) -> None:
    dependency = get_session(SimpleNamespace(app=app))  # type: ignore[arg-type]
    session = await anext(dependency)
    session.add(Item(title="lost"))
    await session.flush()
    with pytest.raises(RuntimeError, match="handler failed"):
        await dependency.athrow(RuntimeError("handler failed"))
    assert (await client.get("/api/v1/items")).json() == []
