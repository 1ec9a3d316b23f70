import asyncio
import time

import pytest
from fastapi import FastAPI, Request
from starlette.requests import ClientDisconnect
from starlette.types import Message

from app.core.disconnect import unless_disconnected
from app.resources import resources_of
from tests.probes import burn


def request_whose_client_leaves_after(seconds: float) -> Request:
    messages = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> Message:
        if messages:
            return messages.pop()
        await asyncio.sleep(seconds)
        return {"type": "http.disconnect"}

    return Request({"type": "http", "method": "GET", "headers": []}, receive)


async def test_work_is_cancelled_when_the_client_leaves(app: FastAPI) -> None:
    pool = resources_of(app).cpu_workers
    started = time.perf_counter()
    with pytest.raises(ClientDisconnect):
        # 30 s of CPU work, abandoned after 0.2 s.
        await unless_disconnected(request_whose_client_leaves_after(0.2), pool.run(burn, 30))
    assert time.perf_counter() - started < 2
    # The stopped job's worker was replaced: the pool serves the next job.
    assert await pool.run(burn, 0.001) >= 0.001


async def test_work_that_finishes_first_is_returned() -> None:
    request = request_whose_client_leaves_after(5)
    assert await unless_disconnected(request, asyncio.sleep(0, result="done")) == "done"
